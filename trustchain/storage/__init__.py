"""SQLite storage: the one database module, migrations and the tables each service owns."""
