"""Holds the deploy recipes to their engines' schemas and to the README's exit-code table.

Run by deploy/validate (which provides kubernetes-validate, jsonschema and PyYAML). Checks:
- every file in deploy/kubernetes/ with `kubernetes-validate --strict` for Kubernetes 1.29 and
  for the newest version it knows;
- what the schemas cannot in indexed-job.yaml: completionMode Indexed, completions equal to
  parallelism and to --shard-total, every $(VAR) in the scan container's command and args an
  env entry of that container, the API key read from a file on a Secret volume, and the pod
  failure policy's FailJob codes equal to the codes the README's "Exit codes and retries" table
  marks stop; report-job.yaml merging exactly the shard folders 0..N-1;
- deploy/aws-batch/job-definition.json against a JSON Schema of AWS Batch's
  RegisterJobDefinition request, its evaluateOnExit stopping on exactly those codes, and its
  --shard-total equal to the array size in deploy/aws-batch/README.md;
- the README's table against src/exit.rs, read now: every code there must be in the table.
Prints one line per check; failures go to stderr, and the exit status is 1 when any failed.
"""

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import yaml
from kubernetes_validate.utils import latest_version

FAILURES = []


def fail(where, message):
    FAILURES.append(f"{where}: {message}")


def ok(message):
    print(f"ok: {message}")


def codes_text(codes):
    return "[" + ", ".join(str(c) for c in sorted(codes)) + "]"


def exit_table(readme):
    """The README's "Exit codes and retries" table: {code: "done" | "retry" | "stop"}."""
    text = readme.read_text()
    section = re.search(
        r"^### Exit codes and retries\n(.*?)(?=^## |^### |\Z)", text, re.M | re.S
    )
    if not section:
        fail(readme, 'no "### Exit codes and retries" section: the stop list has no source')
        return {}
    rows = {}
    for code, action in re.findall(r"^\| (\d+) \| (done|retry|stop) \|", section.group(1), re.M):
        if int(code) in rows:
            fail(readme, f"exit code {code} is in the retry table twice")
        rows[int(code)] = action
    if not rows:
        fail(readme, "the exit codes and retries table has no rows")
    return rows


def exit_rs_codes(path):
    """{code: name} of the exit_codes! table in src/exit.rs, read at test time."""
    text = path.read_text()
    block = re.search(r"^exit_codes!\s*\{(.*?)^\}", text, re.M | re.S)
    if not block:
        fail(path, "no exit_codes! { ... } table found")
        return {}
    return {int(n): name for name, n in re.findall(r"^\s*(\w+)\s*=\s*(\d+)\s*,", block.group(1), re.M)}


def check_table(table, codes, readme, exit_rs):
    missing = {c: n for c, n in codes.items() if c not in table}
    for c, name in sorted(missing.items()):
        fail(
            readme,
            f"{exit_rs} has exit code {c} ({name}), which the \"Exit codes and retries\" table "
            "does not classify (retry or stop)",
        )
    ahead = sorted(set(table) - set(codes))
    if ahead:
        print(
            f"note: the table also lists {codes_text(ahead)}, which {exit_rs} does not define "
            "(yet); they are checked like the others"
        )
    if not missing:
        ok(f"every code of {exit_rs} {codes_text(codes)} is in the README's retry table")


def kubernetes_validate(files):
    versions = ["1.29", latest_version()]
    for version in versions:
        run = subprocess.run(
            [sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet", "-k", version]
            + [str(f) for f in files],
            capture_output=True,
            text=True,
        )
        if run.returncode != 0:
            lines = (run.stdout + run.stderr).strip().splitlines()
            for line in lines or ["(no message)"]:
                fail(f"kubernetes-validate --strict -k {version}", line)
        else:
            ok(f"kubernetes-validate --strict -k {version}: {', '.join(f.name for f in files)}")


def references(text):
    """The $(VAR) references Kubernetes expands in a command or argument ($$ escapes)."""
    refs, i = [], 0
    while i < len(text):
        if text.startswith("$$", i):
            i += 2
        elif text.startswith("$(", i):
            end = text.find(")", i)
            if end < 0:
                break
            refs.append(text[i + 2 : end])
            i = end + 1
        else:
            i += 1
    return refs


def option(args, name):
    """The value after `name` in an argument list, or None."""
    for i, a in enumerate(args[:-1]):
        if a == name:
            return args[i + 1]
    return None


def check_indexed_job(path, stop):
    where = path.name
    start = len(FAILURES)
    job = yaml.safe_load(path.read_text())
    spec = job.get("spec", {})
    n = spec.get("completions")
    if spec.get("completionMode") != "Indexed":
        fail(where, f"spec.completionMode is {spec.get('completionMode')!r}, not Indexed: pods get no index")
    if not isinstance(n, int) or n != spec.get("parallelism"):
        fail(where, f"spec.completions ({n}) must equal spec.parallelism ({spec.get('parallelism')}): one pod per shard, all at once")
    pod = spec.get("template", {}).get("spec", {})
    if pod.get("restartPolicy") != "Never":
        fail(where, "the pod template's restartPolicy must be Never (a pod failure policy needs it)")
    containers = {c.get("name"): c for c in pod.get("containers", [])}
    scan = containers.get("scan")
    if scan is None:
        fail(where, "no container named scan (the pod failure policy names it)")
        return n
    env = [e.get("name") for e in scan.get("env", [])]
    args = [str(a) for a in scan.get("command", []) + scan.get("args", [])]
    before = len(FAILURES)
    for field in ("command", "args"):
        for arg in scan.get(field, []):
            for ref in references(str(arg)):
                if ref not in env:
                    fail(
                        where,
                        f"the scan container's {field} refer to $({ref}), which is not among its env "
                        f"entries ({', '.join(env) or 'none'}): Kubernetes would pass the text "
                        f"\"$({ref})\" unexpanded",
                    )
    if len(FAILURES) == before:
        refs = sorted({r for a in args for r in references(a)})
        ok(f"{where}: every $(VAR) of the scan container ({', '.join(refs) or 'none'}) is one of its env entries")
    total = option(args, "--shard-total")
    if "--shard-from-env" not in args:
        fail(where, "the scan container's args lack --shard-from-env")
    if total is None or not total.isdigit() or int(total) != n:
        fail(where, f"--shard-total is {total}, but completions is {n}: they must be equal")
    # The key: a file on a Secret volume, never a literal.
    key_file = option(args, "--api-key-file")
    literal = [e.get("name") for e in scan.get("env", []) if "KEY" in str(e.get("name")) and "value" in e]
    if literal:
        fail(where, f"the scan container sets {literal} to a literal value: the key must come from a Secret")
    if key_file is None:
        fail(where, "the scan container's args have no --api-key-file: the key must come from a Secret file")
    else:
        mounts = [m for m in scan.get("volumeMounts", []) if key_file.startswith(m.get("mountPath", "").rstrip("/") + "/")]
        volumes = {v.get("name"): v for v in pod.get("volumes", [])}
        if not mounts or "secret" not in volumes.get(mounts[0].get("name"), {}):
            fail(where, f"--api-key-file {key_file} is not on a volume of kind secret")
        else:
            ok(f"{where}: the key is read from {key_file}, on Secret {volumes[mounts[0]['name']]['secret'].get('secretName')}")
    # The pod failure policy stops on exactly the codes the README marks stop.
    rules = spec.get("podFailurePolicy", {}).get("rules", [])
    fail_job = set()
    for r in rules:
        codes = r.get("onExitCodes")
        if r.get("action") == "FailJob" and codes:
            if codes.get("operator") != "In" or codes.get("containerName") != "scan":
                fail(where, f"a FailJob rule must list codes of the scan container with operator In: {codes}")
            fail_job |= set(codes.get("values", []))
    if fail_job != stop:
        fail(
            where,
            f"the pod failure policy stops the Job on {codes_text(fail_job)}, but the README's "
            f"\"Exit codes and retries\" table marks {codes_text(stop)} stop "
            f"(missing {codes_text(stop - fail_job)}, extra {codes_text(fail_job - stop)})",
        )
    else:
        ok(f"{where}: the pod failure policy stops the Job on {codes_text(stop)}, the table's stop codes")
    if not any(
        r.get("action") == "Ignore"
        and any(c.get("type") == "DisruptionTarget" for c in r.get("onPodConditions", []))
        for r in rules
    ):
        fail(where, "no Ignore rule for DisruptionTarget: evictions would count against backoffLimit")
    if len(FAILURES) == start:
        ok(f"{where}: Indexed, completions = parallelism = --shard-total = {n}")
    return n


def check_report_job(path, n):
    where = path.name
    job = yaml.safe_load(path.read_text())
    containers = job.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
    args = [str(a) for c in containers for a in c.get("args", [])]
    shards = [int(m.group(1)) for a in args if (m := re.search(r"/shard-(\d+)$", a))]
    if isinstance(n, int) and shards != list(range(n)):
        fail(where, f"merges shard folders {shards}, but the indexed Job writes shard-0 to shard-{n - 1}")
    else:
        ok(f"{where}: merges shard-0 to shard-{len(shards) - 1}")


def exit_code_matches(pattern, code):
    if pattern.endswith("*"):
        return str(code).startswith(pattern[:-1])
    return str(code) == pattern


def check_aws_batch(folder, stop, all_codes):
    path = folder / "job-definition.json"
    schema_path = folder / "register-job-definition.schema.json"
    where = f"{folder.name}/{path.name}"
    try:
        definition = json.loads(path.read_text())
        schema = json.loads(schema_path.read_text())
    except (OSError, ValueError) as e:
        fail(where, f"cannot read: {e}")
        return
    jsonschema.Draft202012Validator.check_schema(schema)
    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(definition), key=lambda e: list(e.path)
    )
    for e in errors:
        at = "/".join(str(p) for p in e.path) or "(top)"
        fail(where, f"not a RegisterJobDefinition request at {at}: {e.message}")
    if not errors:
        ok(f"{where}: valid against {schema_path.name}")
    # evaluateOnExit: the first entry that matches decides; none matching means retry.
    entries = definition.get("retryStrategy", {}).get("evaluateOnExit", [])
    stops = set()
    for code in all_codes:
        for entry in entries:
            if "onExitCode" in entry and exit_code_matches(entry["onExitCode"], code):
                if entry.get("action", "").upper() == "EXIT":
                    stops.add(code)
                break
    if stops != stop:
        fail(
            where,
            f"evaluateOnExit stops on {codes_text(stops)}, but the README's \"Exit codes and "
            f"retries\" table marks {codes_text(stop)} stop",
        )
    else:
        ok(f"{where}: evaluateOnExit stops on {codes_text(stop)}, the table's stop codes, and retries the others")
    command = " ".join(definition.get("containerProperties", {}).get("command", []))
    total = re.search(r"--shard-total (\d+)", command)
    readme = (folder / "README.md").read_text()
    size = re.search(r"--array-properties size=(\d+)", readme)
    if not total or not size or total.group(1) != size.group(1):
        fail(
            where,
            f"--shard-total ({total and total.group(1)}) must equal the array size in "
            f"{folder.name}/README.md's submit-job ({size and size.group(1)})",
        )


def main():
    root = Path(__file__).resolve().parent.parent
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kubernetes", type=Path, default=root / "deploy/kubernetes")
    p.add_argument("--aws-batch", type=Path, default=root / "deploy/aws-batch")
    p.add_argument("--readme", type=Path, default=root / "README.md")
    p.add_argument("--exit-rs", type=Path, default=root / "src/exit.rs")
    a = p.parse_args()

    table = exit_table(a.readme)
    codes = exit_rs_codes(a.exit_rs)
    check_table(table, codes, a.readme.name, "src/exit.rs")
    stop = {c for c, action in table.items() if action == "stop"}
    all_codes = sorted(set(table) | set(codes))

    files = sorted(f for f in a.kubernetes.iterdir() if f.suffix in (".yaml", ".yml", ".json"))
    if not files:
        fail(a.kubernetes, "no manifests")
    kubernetes_validate(files)
    n = check_indexed_job(a.kubernetes / "indexed-job.yaml", stop)
    check_report_job(a.kubernetes / "report-job.yaml", n)
    check_aws_batch(a.aws_batch, stop, all_codes)

    if FAILURES:
        for f in FAILURES:
            print(f"FAILED: {f}", file=sys.stderr)
        print(f"deploy/validate: {len(FAILURES)} check(s) failed", file=sys.stderr)
        return 1
    print("deploy/validate: every check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
