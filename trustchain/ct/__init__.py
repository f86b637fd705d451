"""Certificate transparency: RFC 6962 logs (pure cores; the log and its API arrive with the CT issue)."""
