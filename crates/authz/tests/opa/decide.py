"""Evaluates Rego rules with OPA (the opa-golib-python-bindings package) for Portcullis's
differential test. Input: a JSON file {"modules": [{"path", "source"}], "queries": [{"rule",
"input"}]}; output on stdout: a JSON list, one value per query (null when undefined)."""

import json
import sys

from opa_bindings import OpaEngine, OpaUndefinedError


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as f:
        job = json.load(f)
    engine = OpaEngine()
    for module in job["modules"]:
        engine.add_policy(module["path"], module["source"])
    results = []
    for query in job["queries"]:
        try:
            results.append(engine.eval_document(query["rule"], query["input"]))
        except OpaUndefinedError:
            results.append(None)
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
