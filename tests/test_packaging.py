"""What ships: the Dockerfile, the compose file, the wheel."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile

from conftest import ROOT


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint") or str(ROOT / ".venv" / "bin" / "hadolint")
    result = subprocess.run([hadolint, "--failure-threshold", "warning", str(ROOT / "Dockerfile")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_is_valid_and_wires_migrate_before_schedule():
    checker = shutil.which("check-jsonschema") or str(ROOT / ".venv" / "bin" / "check-jsonschema")
    compose = ROOT / "docker-compose.yml"
    result = subprocess.run([checker, "--builtin-schema", "vendor.compose-spec", str(compose)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    from ruamel.yaml import YAML

    services = YAML(typ="safe").load(compose.read_text())["services"]
    assert services["migrate"]["command"] == ["migrate"]
    assert services["schedule"]["command"] == ["schedule"]
    assert services["schedule"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["depends_on"]["db"]["condition"] == "service_healthy"


def test_the_wheel_carries_its_sql(tmp_path):
    """pip install (and the Docker image) get sql/, migrations/ and the pgTAP suite inside the package."""
    # setuptools reuses build/ between wheels, and would ship files since renamed.
    shutil.rmtree(ROOT / "build", ignore_errors=True)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    names = zipfile.ZipFile(next(tmp_path.glob("chatdesk-*.whl"))).namelist()
    for expected in ("chatdesk/cli.py", "chatdesk/sql/load.sql", "chatdesk/sql/110_messages.sql",
                     "chatdesk/migrations/0001.schema.sql", "chatdesk/pgtap/020_state_machine.sql",
                     "chatdesk/pgtap_helpers.sql"):
        assert expected in names, expected
    assert len([n for n in names if n.startswith("chatdesk/sql/")]) == len(list((ROOT / "sql").glob("*.sql")))


def dockerfile_copies() -> list[str]:
    """The paths the Dockerfile's COPY lines take from the build context."""
    paths = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            paths += line.split()[1:-1]
    return paths


def test_the_images_contents_make_a_package_that_runs_its_tests(tmp_path, db_url):
    """A wheel built from exactly what the Dockerfile copies (no more: a file
    it forgets is missing here as in the image) runs --version and the
    pgTAP suite."""
    context = tmp_path / "context"
    for path in dockerfile_copies():
        source, target = ROOT / path, context / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, symlinks=True)
        else:
            shutil.copy(source, target)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"),
                            str(context)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    installed = tmp_path / "installed"
    zipfile.ZipFile(next((tmp_path / "dist").glob("chatdesk-*.whl"))).extractall(installed)
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("PG") and k != "DATABASE_URL"}
    env["PYTHONPATH"] = str(installed)  # ahead of the editable install of this checkout

    def chatdesk(*args):
        return subprocess.run([sys.executable, "-m", "chatdesk", *args], capture_output=True, text=True,
                              env=env, cwd=tmp_path, timeout=300)

    where = subprocess.run([sys.executable, "-c", "import chatdesk; print(chatdesk.__file__)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path)
    assert where.stdout.startswith(str(installed)), where.stdout
    version = chatdesk("--version")
    assert version.returncode == 0 and version.stdout.startswith("chatdesk, version "), version.stderr
    tested = chatdesk("--database-url", db_url, "test")
    assert tested.returncode == 0, tested.stdout[-2000:] + tested.stderr
    assert "Traceback" not in tested.stderr


def test_the_version_the_changelog_and_the_released_migrations_agree():
    """One release: --version, the CHANGELOG's newest dated entry and the
    newest release of migrations/released.sha256 name the same version."""
    import re

    from chatdesk import __version__
    headings = re.findall(r"^## (\S+) \((\d{4}-\d{2}-\d{2})\)$", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert headings and headings[0][0] == __version__, (headings[:1], __version__)
    released = [line.split()[2] for line in (ROOT / "migrations" / "released.sha256").read_text().splitlines() if line]
    assert released[-1] == __version__
    version = subprocess.run([sys.executable, "-m", "chatdesk", "--version"], capture_output=True, text=True)
    assert version.stdout.strip() == f"chatdesk, version {__version__}"
