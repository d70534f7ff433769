"""The foundation every stage may import, and none of them: errors and their codes, the values the
MQTT API shows (origins, replies, failures), our topic names, the slot policy, the counters, and
the redaction of secrets from logs."""
