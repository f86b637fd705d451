"""A zone that exercises every branch of the engine."""

EXAMPLE = """$ORIGIN example.net.
$TTL 300
@       SOA   ns1 hostmaster 2026112500 7200 3600 1209600 60
@       NS    ns1
@       NS    ns2.elsewhere.org.
ns1     AAAA  2001:db8::1
ns1     A     192.0.2.1
www     A     192.0.2.10
www     AAAA  2001:db8::10
alias   CNAME www
chain   CNAME alias
loop1   CNAME loop2
loop2   CNAME loop1
out     CNAME www.elsewhere.org.
*.wild  TXT   "wildcard"
*.wc    CNAME www
sub     NS    ns.sub
sub     DS    12345 13 2 3AB2A1D4B4E5B8D5E0C47D1AB2EE4BE2AE3B9A1FA2AFB5B3AF0D1CCE9AE4A3F0
ns.sub  A     192.0.2.53
a.b.c.deep TXT "deep"
mail    MX    10 www
big     TXT   "{}"
""".format('" "'.join(["x" * 200] * 6))
