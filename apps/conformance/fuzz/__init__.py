"""``snip fuzz``: malformed, mutated and adversarial datagrams against a receiver, with a legitimate
transfer running alongside that must still complete bit for bit."""
