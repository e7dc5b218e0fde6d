#!/usr/bin/env python3
"""Validates WireGuardPeer examples against the generated CRD's OpenAPI schema.

Every file in manifests/examples/ must pass; every file in manifests/examples/invalid/ must
fail. CEL rules are not evaluated here (the gateway validates the same things again).
"""
import pathlib
import sys

import jsonschema
import yaml

root = pathlib.Path(__file__).resolve().parent.parent / "manifests"
crd = yaml.safe_load((root / "crds" / "wireguardpeers.zt.hanzo.ai.yaml").read_text())
schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
validator = jsonschema.Draft7Validator(schema)

failures = 0
for path in sorted((root / "examples").glob("*.yaml")):
    for doc in yaml.safe_load_all(path.read_text()):
        errors = [e.message for e in validator.iter_errors(doc)]
        if errors:
            print(f"FAIL {path.name}: {errors}")
            failures += 1
        else:
            print(f"ok   {path.name} passes the WireGuardPeer schema")
for path in sorted((root / "examples" / "invalid").glob("*.yaml")):
    doc = yaml.safe_load(path.read_text())
    if any(True for _ in validator.iter_errors(doc)):
        print(f"ok   {path.name} is rejected by the WireGuardPeer schema")
    else:
        print(f"FAIL {path.name} should be rejected by the WireGuardPeer schema")
        failures += 1
sys.exit(1 if failures else 0)
