"""Genesis, trust anchors and node initialisation."""
