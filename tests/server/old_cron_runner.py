"""A small, faithful re-implementation of the original AAMI cron runner's loop
(`dynamic_check.py` 1.0.0), run by tests as a real subprocess.

Kept to what the compat endpoint must satisfy, with the original's behaviour where it
matters (and its flaws, on purpose): no token; each item's `script_hash` (defaulting to
"") names the cache file `<name>/<name>_<script_hash>.sh`, written only if that file
does not exist; `current.sh` is re-linked to it; the file is executed directly (no
interpreter) with the item's `config` JSON on stdin, a 30 s timeout; stdout goes to
`<textfile_dir>/<name>.prom` via a `.prom.tmp` rename, a failure writes
`aami_check_error{check="<name>"} 1` instead. Usage:

    old_cron_runner.py SERVER_URL HOSTNAME TEXTFILE_DIR CHECK_SCRIPTS_DIR
"""

import json
import subprocess
import sys
import urllib.request
from pathlib import Path


def fetch(server: str, hostname: str) -> list[dict]:
    url = f"{server.rstrip('/')}/api/v1/checks/target/hostname/{hostname}"
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read().decode("utf-8"))


def save(scripts: Path, name: str, content: str, script_hash: str) -> Path:
    directory = scripts / name
    directory.mkdir(parents=True, exist_ok=True)
    script_file = directory / f"{name}_{script_hash}.sh"
    current = directory / "current.sh"
    if not script_file.exists():
        script_file.write_text(content)
        script_file.chmod(0o755)
    if current.is_symlink() or current.exists():
        current.unlink()
    current.symlink_to(script_file)
    return current


def execute(textfiles: Path, name: str, script: Path, config: dict) -> bool:
    tmp, final = textfiles / f"{name}.prom.tmp", textfiles / f"{name}.prom"
    try:
        result = subprocess.run([str(script)], input=json.dumps(config),
                                capture_output=True, text=True, timeout=30)
        ok = result.returncode == 0
        if not ok:
            print(f"check failed: {name} ({result.returncode}): {result.stderr}",
                  file=sys.stderr)
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"check execution error: {name} - {exc}", file=sys.stderr)
        ok, result = False, None
    if ok and result is not None:
        tmp.write_text(result.stdout)
    else:
        tmp.write_text("# HELP aami_check_error Check execution error (1=error)\n"
                       "# TYPE aami_check_error gauge\n"
                       f'aami_check_error{{check="{name}"}} 1\n')
    tmp.rename(final)
    return ok


def main() -> int:
    server, hostname, textfiles, scripts = sys.argv[1:5]
    textfile_dir, scripts_dir = Path(textfiles), Path(scripts)
    textfile_dir.mkdir(parents=True, exist_ok=True)
    failed = 0
    for item in fetch(server, hostname):
        name = item.get("name", "")
        path = save(scripts_dir, name, item.get("script_content", ""),
                    item.get("script_hash", ""))
        failed += not execute(textfile_dir, name, path, item.get("config") or {})
    print(f"ran, failed={failed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
