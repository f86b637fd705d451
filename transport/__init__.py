"""asyncio adapters: each feeds bytes and time to a core and sends what it returns."""
