"""The batch templates as text: pure rendering, quoting, validation (no Slurm needed)."""

from __future__ import annotations

import stat
import string
import subprocess
import sys
from pathlib import Path

import pytest

from clusterml.launch import slurm as S
from clusterml.launch import slurmctl as C
from clusterml.launch.slurmsettings import SlurmSettings

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]

HOSTILE = [
    "; rm -rf ~",
    "$(id)",
    "`id`",
    "it's",
    'say "hi"',
    "two  spaces ",
    "{}",
    "{n} {program_and_args} {{x}}",
    "$HOME ${PATH} $1 $@ \\ \\n",
    "line1\nline2",
    "*",
    "-n",
    "",
    "tab\there",
    "'\"'\"'",
    "é ünïcode ✓",
]

# a fake srun / mpiexec: drop the launcher's options, run the command once
FAKE_SRUN = """#!/bin/bash
while [[ $# -gt 0 && "$1" == --* ]]; do shift; done
exec "$@"
"""
FAKE_MPIEXEC = """#!/bin/bash
[[ "$1" == -n ]] && shift 2
exec "$@"
"""


@pytest.fixture
def fakebin(tmp_path):
    d = tmp_path / "fakebin"
    d.mkdir()
    for name, text in (("srun", FAKE_SRUN), ("mpiexec", FAKE_MPIEXEC)):
        p = d / name
        p.write_text(text)
        p.chmod(0o755)
    return d


def bash_n(text: str, tmp_path: Path) -> None:
    p = tmp_path / "check.sh"
    p.write_text(text)
    r = subprocess.run(["bash", "-n", str(p)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, f"bash -n failed: {r.stderr}\n{text}"


def run_script(text: str, tmp_path: Path, fakebin: Path, name="job.sh") -> str:
    p = S.write_batch_script(text, tmp_path / "jobs", name)
    env = {"PATH": f"{fakebin}:/usr/bin:/bin", "SLURM_NTASKS": "4", "HOME": str(tmp_path)}
    r = subprocess.run(["bash", str(p)], capture_output=True, text=True, env=env, timeout=30, cwd=tmp_path)
    assert r.returncode == 0, f"script failed: {r.stderr}\n{text}"
    return r.stdout


# -------------------------------------------------------------------- hostile values
@pytest.mark.parametrize("value", HOSTILE)
def test_env_value_arrives_literally(value, tmp_path, fakebin):
    text = S.render_spmd_script(
        {"ntasks": 2, "env": {"CML_HOSTILE": value}},
        ["bash", "-c", 'printf "%s" "$CML_HOSTILE"'],
    )
    bash_n(text, tmp_path)
    assert run_script(text, tmp_path, fakebin) == value
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("value", HOSTILE)
def test_command_argument_arrives_literally(value, tmp_path, fakebin):
    text = S.render_spmd_script({"ntasks": 4}, ["printf", "%s", value])
    bash_n(text, tmp_path)
    assert run_script(text, tmp_path, fakebin) == value


@pytest.mark.parametrize("mpi", ["pmi2", "mpiexec"])
def test_engine_script_arguments_arrive_literally(mpi, tmp_path, fakebin):
    prog = ["printf", "%s|"] + [v for v in HOSTILE if v]
    text = S.render_engine_script({"mpi": mpi}, 4, prog, engine_mpi_flag=True)
    bash_n(text, tmp_path)
    out = run_script(text, tmp_path, fakebin)
    assert out == "".join(v + "|" for v in HOSTILE if v) + "--mpi|"


def test_hostile_venv_path_is_sourced_literally(tmp_path, fakebin):
    venv = tmp_path / "v; rm -rf ~ $(touch pwned) `id` 'q' \"d\" {x}"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "activate").write_text('export CML_ACTIVATED="yes"\n')
    text = S.render_spmd_script(
        {"venv": str(venv)}, ["bash", "-c", 'printf "%s" "$CML_ACTIVATED"']
    )
    bash_n(text, tmp_path)
    assert run_script(text, tmp_path, fakebin) == "yes"
    assert not (tmp_path / "pwned").exists()


def test_setup_lines_run_before_the_program(tmp_path, fakebin):
    text = S.render_spmd_script(
        {"setup": ["export CML_A=1", "CML_B=$((CML_A + 1)); export CML_B"]},
        ["bash", "-c", 'printf "%s" "$CML_B"'],
    )
    assert run_script(text, tmp_path, fakebin) == "2"


def test_failing_setup_stops_the_job(tmp_path, fakebin):
    text = S.render_spmd_script({"setup": ["false"]}, ["printf", "ran"])
    p = S.write_batch_script(text, tmp_path / "jobs", "job.sh")
    r = subprocess.run(["bash", str(p)], capture_output=True, text=True, timeout=30,
                       env={"PATH": f"{fakebin}:/usr/bin:/bin"})
    assert r.returncode != 0 and "ran" not in r.stdout


@pytest.mark.parametrize(
    "value",
    ["a b", "$(id)", "`id`", "; rm -rf ~", "it's", "{}", "x#y", "{n}", "é"],
)
@pytest.mark.parametrize("field", ["job_name", "account", "partition", "output", "workdir"])
def test_sbatch_values_are_double_quoted(field, value, tmp_path):
    text = S.render_spmd_script({field: value}, ["true"])
    flag = {"job_name": "job-name", "workdir": "chdir"}.get(field, field)
    assert f'#SBATCH --{flag}="{value}"\n' in text
    bash_n(text, tmp_path)


@pytest.mark.parametrize("field", ["job_name", "account", "partition", "output", "workdir"])
@pytest.mark.parametrize("value", ["a\nb", "a\rb", "a\x00b", "a\tb", 'a"b', "a\\b", ""])
def test_sbatch_values_that_cannot_be_written_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        S.render_spmd_script({field: value}, ["true"])


def test_newline_error_says_why():
    with pytest.raises(ValueError, match=r"newline.*#SBATCH lines cannot be quoted"):
        S.render_engine_batch_template({"job_name": "x\n#SBATCH --uid=0"})


@pytest.mark.parametrize(
    "settings",
    [
        {"setup": ["module load x\nrm -rf ~"]},
        {"extra_sbatch": ["--qos=a\n#SBATCH --uid=0"]},
        {"extra_sbatch": ["qos=a"]},
        {"extra_sbatch": "--qos=a"},
        {"setup": "module load x"},
        {"env": {"BAD NAME": "x"}},
        {"env": {"X": "a\x00b"}},
        {"time": "1 hour"},
        {"time": "01:00:00\n"},
        {"mem": "4 GB"},
        {"ntasks": 0},
        {"ntasks": "4"},
        {"nodes": True},
        {"cpus_per_task": -1},
        {"mpi": "openmpi"},
        {"colour": "blue"},
    ],
)
def test_bad_settings_are_refused(settings):
    with pytest.raises(ValueError):
        S.render_spmd_script(settings, ["true"])


def test_bad_command_is_refused():
    with pytest.raises(ValueError):
        S.render_spmd_script({}, [])
    with pytest.raises(ValueError):
        S.render_spmd_script({}, "python job.py")


# -------------------------------------------------------------------- content
def test_spmd_script_content():
    text = S.render_spmd_script(
        SlurmSettings(
            account="proj1", partition="batch", time="00:30:00", nodes=2, ntasks=8,
            ntasks_per_node=4, cpus_per_task=3, mem="16G", job_name="job",
            extra_sbatch=["--qos=debug", "#SBATCH --constraint=skylake"],
            setup=["module load mpi"],
        ),
        ["python", "job.py"],
    )
    assert text.startswith("#!/bin/bash\n")
    for line in [
        "#SBATCH --account=proj1", "#SBATCH --partition=batch", "#SBATCH --time=00:30:00",
        "#SBATCH --nodes=2", "#SBATCH --ntasks=8", "#SBATCH --ntasks-per-node=4",
        "#SBATCH --cpus-per-task=3", "#SBATCH --mem=16G", "#SBATCH --export=ALL",
        "#SBATCH --qos=debug", "#SBATCH --constraint=skylake",
        "export OMP_NUM_THREADS=3", "export OPENBLAS_NUM_THREADS=3",
        "module load mpi", "exec srun --mpi=pmi2 --cpus-per-task=3 python job.py",
    ]:
        assert line + "\n" in text, line
    # every #SBATCH line comes before the first command, or sbatch ignores it
    lines = text.splitlines()
    last_sbatch = max(i for i, ln in enumerate(lines) if ln.startswith("#SBATCH"))
    first_cmd = min(i for i, ln in enumerate(lines[1:], 1) if ln and not ln.startswith("#"))
    assert last_sbatch < first_cmd


@pytest.mark.parametrize(
    "mpi, line",
    [
        ("pmi2", "exec srun --mpi=pmi2 prog --mpi"),
        ("pmix", "exec srun --mpi=pmix prog --mpi"),
        ("none", "exec srun --mpi=none prog --mpi"),
        ("mpiexec", 'exec /opt/my\\ mpi/mpiexec -n "${SLURM_NTASKS}" prog --mpi'),
    ],
)
def test_mpi_modes(mpi, line):
    text = S.render_engine_script({"mpi": mpi, "mpiexec": "/opt/my mpi/mpiexec"}, 3, ["prog"])
    assert "#SBATCH --ntasks=3\n" in text
    if mpi == "mpiexec":
        line = "exec '/opt/my mpi/mpiexec' -n \"${SLURM_NTASKS}\" prog --mpi"
    assert text.rstrip().endswith(line)


def test_engine_ntasks_must_match_n():
    with pytest.raises(ValueError, match="ntasks"):
        S.render_engine_script({"ntasks": 3}, 4, ["prog"])


# -------------------------------------------------------------------- ipyparallel templates
def fields(template: str) -> set:
    return {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}


HOSTILE_SETTINGS = dict(
    job_name="x {y} $(id)",
    env={"A": "{}", "B": "{n} {{", "C": "}"},
    setup=["f() { echo '{}'; }", "f"],
    mpi="mpiexec",
    mpiexec="/x/{mpi}/mpiexec",
    cpus_per_task=2,
)


def test_engine_template_keeps_only_ipyparallel_placeholders():
    t = S.render_engine_batch_template(HOSTILE_SETTINGS)
    assert fields(t) == {"n", "program_and_args", "output_file"}
    t = S.render_engine_batch_template({"output": "/tmp/o-%j.log"})
    assert fields(t) == {"n", "program_and_args", "cluster_id"}
    assert "#SBATCH --ntasks={n}\n" in t
    assert "srun --mpi=pmi2 {program_and_args} --mpi\n" in t


def test_engine_template_formatted_by_ipyparallel_equals_direct_render():
    from IPython.utils.text import EvalFormatter

    program = [sys.executable, "-m", "ipyparallel.engine", "--profile-dir=/p {x}"]
    settings = dict(HOSTILE_SETTINGS, output="/logs/engines-%j.log")
    t = S.render_engine_batch_template(settings)
    formatted = EvalFormatter().format(
        t, n=4, program_and_args=S.shlex.join(program), cluster_id="c1", output_file="unused"
    )
    assert formatted == S.render_engine_script(settings, 4, program)


def test_controller_template():
    t = S.render_controller_batch_template(HOSTILE_SETTINGS)
    assert fields(t) == {"program_and_args", "output_file"}
    assert "#SBATCH --ntasks=1\n" in t and "#SBATCH --nodes=1\n" in t
    assert t.rstrip().endswith("exec {program_and_args}")
    direct = S.render_controller_script({}, ["ipcontroller", "--ip=*"])
    assert direct.rstrip().endswith("exec ipcontroller '--ip=*'")


def test_ipyparallel_writes_our_template_where_we_say(tmp_path, monkeypatch, ipython_dir):
    """ipyparallel's own SlurmEngineSetLauncher renders and writes our template."""
    from ipyparallel.cluster.launcher import SlurmEngineSetLauncher

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    jobs = tmp_path / "cluster" / "jobs"
    jobs.mkdir(parents=True, mode=0o700)
    launcher = SlurmEngineSetLauncher(
        work_dir=".",  # what ipyparallel.Cluster passes
        batch_template=S.render_engine_batch_template(HOSTILE_SETTINGS),
        batch_file_name=str(jobs / "slurm_engine.sbatch"),
        profile_dir=str(tmp_path / "profile"),
        cluster_id="cid",
    )
    launcher.write_batch_script(4)
    path = jobs / "slurm_engine.sbatch"
    assert path.exists() and list(cwd.iterdir()) == []
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    text = path.read_text()
    assert "#SBATCH --ntasks=4\n" in text
    assert "export A='{}'\n" in text and "export B='{n} {{'\n" in text
    assert "ipyparallel.engine" in text and text.rstrip().endswith("--mpi")
    assert '#SBATCH --job-name="x {y} $(id)"' in text
    bash_n(text, tmp_path)


# -------------------------------------------------------------------- files
def test_write_batch_script_mode_and_folder(tmp_path):
    p = S.write_batch_script("#!/bin/bash\n", tmp_path / "new" / "jobs", "a.sbatch")
    assert p.is_absolute() and p.read_text() == "#!/bin/bash\n"
    assert stat.S_IMODE(p.stat().st_mode) == 0o700
    assert stat.S_IMODE(p.parent.stat().st_mode) == 0o700
    p.chmod(0o644)
    S.write_batch_script("x", p.parent, "a.sbatch")
    assert stat.S_IMODE(p.stat().st_mode) == 0o700 and p.read_text() == "x"
    for bad in ("", "a/b", "..", "."):
        with pytest.raises(ValueError):
            S.write_batch_script("x", tmp_path, bad)


def test_parse_sbatch_output():
    assert C.parse_sbatch_output("Submitted batch job 812\n") == "812"
    assert C.parse_sbatch_output("812;cluster\n") == "812"
    assert C.parse_sbatch_output("sbatch: warning: x\nSubmitted batch job 9") == "9"
    with pytest.raises(C.SlurmError, match="no job id"):
        C.parse_sbatch_output("sbatch: error: Batch job submission failed")


def test_job_info_str():
    assert str(C.JobInfo("812", "PENDING", "Resources")) == "Slurm job 812 is PENDING (Resources)"
    assert str(C.JobInfo("3", "RUNNING", "None")) == "Slurm job 3 is RUNNING"


def test_no_mpi4py_import():
    """The renderer stays pure: no MPI, no ipyparallel, not even the Slurm commands."""
    code = (
        "import sys; import clusterml.launch.slurm; "
        "assert 'mpi4py' not in sys.modules and 'ipyparallel' not in sys.modules; "
        "assert 'clusterml.launch.slurmctl' not in sys.modules, 'the renderer loads slurmctl'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=30)


# -------------------------------------------------------------------- shipped templates
SHIPPED = {
    "engines.sbatch.tmpl": lambda: S.render_engine_batch_template(SlurmSettings()),
    "controller.sbatch.tmpl": lambda: S.render_controller_batch_template(SlurmSettings()),
    "spmd.sbatch.example": lambda: S.render_spmd_script(
        SlurmSettings(ntasks=4, time="00:10:00"), ["python", "job.py"]
    ),
}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_templates_match_the_renderer(name):
    """slurm/*.tmpl are the renderer's output with default settings (regenerate with
    ``python -m clusterml.launch.slurm``)."""
    assert (REPO / "slurm" / name).read_text() == SHIPPED[name]()
