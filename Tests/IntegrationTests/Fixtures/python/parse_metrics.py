"""Parses Prometheus text from stdin with prometheus_client's own parser (a
third-party reader, not ours) and prints {"name{labels}": value} as JSON.
Exits non-zero, with the parser's error, if the text is not valid exposition."""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families

values = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for sample in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
        values[f"{sample.name}{{{labels}}}"] = sample.value
print(json.dumps(values))
