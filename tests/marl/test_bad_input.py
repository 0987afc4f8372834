"""Bad input to marl, as a user gives it: every case is one line ``error: ...`` naming the argument, exit code 2, no
traceback, and nothing written to the run directory.

The tables run ``marl.__main__.main`` in-process (argparse's own errors exit 2 through ``SystemExit``); one case per
error path also runs ``python -m marl`` in a subprocess, to prove the end-to-end exit code and the absent traceback.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from marl.__main__ import main
from marl.config import ADMMConfig, EnvConfig, TrainConfig, TRPOConfig, apply_overrides, config_from_dict
from marl.envs import cooperative_navigation_v0, treasure_collection_v0

TINY = ["--set", "steps_per_iter=200", "--set", "env.n_envs=4", "--set", "env.max_cycles=25",
        "--set", "hidden_sizes=16,16", "--set", "admm.iterations=4", "--set", "vf_epochs=1", "--no-progress"]


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    """(exit code, stderr) of ``python -m marl argv`` run in-process."""
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse
        code = exc.code
    err = capsys.readouterr().err
    return code, err


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` and its bytes (the lock file's holder pid aside)."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def assert_one_line_error(code: int, err: str, message: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].startswith(("error: ", "python -m marl train: error: ", "python -m marl eval: error: ",
                                 "python -m marl table: error: ")), err
    assert message in lines[-1], err


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A finished two-iteration MATRPO run (400 steps) to resume, evaluate and tabulate; copied per test."""
    run = tmp_path_factory.mktemp("trained") / "run"
    assert main(["train", "--steps", "400", "--out", str(run), *TINY]) == 0
    return run


@pytest.fixture
def run_copy(trained_run, tmp_path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(trained_run, dst)
    return dst


# -- train: bad settings and files; the run directory must not appear ---------------------------------------------
def _files(tmp: Path) -> dict[str, str]:
    """Config files a user might pass, written into ``tmp``; name -> path."""
    texts = {
        "section_float.toml": "[env]\nn_agents = 3.5\n",
        "top_float.toml": "seed = 1.5\n",
        "list_hidden.toml": 'hidden_sizes = [64, "x"]\n',
        "bad_syntax.toml": "[env\nn_agents = 3\n",
        "list_root.yaml": "- 1\n- 2\n",
        "bad_syntax.yaml": "env: [1, 2\n",
        "null.json": "null",
        "inf.json": '{"trpo": {"max_kl": Infinity}}',
        "bool_int.json": '{"seed": true}',
        "section_scalar.json": '{"admm": 3}',
        "binary.toml": None,
        "cfg.ini": "seed = 1\n",
    }
    out = {}
    for name, text in texts.items():
        path = tmp / name
        if text is None:
            path.write_bytes(b"\xff\xfe\x00garbage")
        else:
            path.write_text(text)
        out[name] = str(path)
    (tmp / "dir.toml").mkdir()
    out["dir.toml"] = str(tmp / "dir.toml")
    out["missing.toml"] = str(tmp / "missing.toml")
    return out


TRAIN_CASES = [
    # (argv after "train", expected text in the error line); {name} is a config file from _files
    (["--set", "env.n_envs=2.5"], "env.n_envs must be an integer, got 2.5"),
    (["--set", "torch_threads=0.5"], "torch_threads must be an integer"),
    (["--set", "seed=1.5"], "seed must be an integer"),
    (["--set", "admm.iterations=2.5"], "admm.iterations must be an integer"),
    (["--set", "trpo.cg_iters=2.5"], "trpo.cg_iters must be an integer"),
    (["--set", "hidden_sizes=64,x"], "hidden_sizes[1] must be an integer"),
    (["--set", "trpo.max_kl=inf"], "trpo.max_kl must be a finite number"),
    (["--set", "vf_lr=nan"], "vf_lr must be a finite number"),
    (["--set", "admm.penalty=inf"], "admm.penalty must be a finite number"),
    (["--set", "trpo.cg_damping=nan"], "trpo.cg_damping must be a finite number"),
    (["--set", "admm.dual_init=-inf"], "admm.dual_init must be a finite number"),
    (["--set", "trpo.max_kl=-1"], "trpo.max_kl must be > 0"),
    (["--set", "gamma=abc"], "gamma must be a number"),
    (["--set", "admm.parallel_endpoints=maybe"], "admm.parallel_endpoints must be true or false"),
    (["--set", "admm.rho=2"], "unknown key(s) ['rho'] in [admm]"),
    (["--set", "env=3"], "names a whole section"),
    (["--set", "seed"], "must look like key=value"),
    (["--set", "a.b.c=1"], "must be key or section.key"),
    (["--seed", "-1"], "seed must be >= 0"),
    (["--steps", "0"], "total_steps must be > 0"),
    (["--n-agents", "1"], "env.n_agents must be >= 2"),
    (["--n-agents", "2.5"], "argument --n-agents: invalid int value"),
    (["--algo", "ppo"], "argument --algo: invalid choice"),
    (["--config", "{section_float.toml}"], "env.n_agents must be an integer, got 3.5"),
    (["--config", "{top_float.toml}"], "seed must be an integer, got 1.5"),
    (["--config", "{list_hidden.toml}"], "hidden_sizes[1] must be an integer, got 'x'"),
    (["--config", "{bad_syntax.toml}"], "cannot parse config file"),
    (["--config", "{list_root.yaml}"], "must hold a mapping of keys to values, got list"),
    (["--config", "{bad_syntax.yaml}"], "cannot parse config file"),
    (["--config", "{null.json}"], "must hold a mapping of keys to values"),
    (["--config", "{inf.json}"], "trpo.max_kl must be a finite number"),
    (["--config", "{bool_int.json}"], "seed must be an integer, got True"),
    (["--config", "{section_scalar.json}"], "config section 'admm' must be a table"),
    (["--config", "{binary.toml}"], "cannot read config file"),
    (["--config", "{cfg.ini}"], "must end in .toml, .yaml, .yml or .json"),
    (["--config", "{dir.toml}"], "is a directory"),
    (["--config", "{missing.toml}"], "does not exist"),
]


@pytest.mark.parametrize(("argv", "message"), TRAIN_CASES, ids=[" ".join(a) for a, _ in TRAIN_CASES])
def test_train_bad_input(tmp_path, capsys, argv, message):
    files = _files(tmp_path)
    out = tmp_path / "run"
    argv = [files[a[1:-1]] if a.startswith("{") else a for a in argv]
    # The tiny settings first: the bad value given after them is the one that counts.
    code, err = run_cli(["train", "--out", out, "--steps", "400", *TINY, *argv], capsys)
    assert_one_line_error(code, err, message)
    assert not out.exists()


def test_out_under_a_file_empty_or_unwritable(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code, err = run_cli(["train", "--out", tmp_path / "file" / "run", *TINY], capsys)
    assert_one_line_error(code, err, "cannot create run directory")
    code, err = run_cli(["train", "--out", "", *TINY], capsys)
    assert_one_line_error(code, err, "--out must be a non-empty path")
    code, err = run_cli(["train", "--out", tmp_path / "file", *TINY], capsys)
    assert_one_line_error(code, err, "exists and is not a directory")
    if Path("/proc/self").is_dir():  # not creatable, even by root
        code, err = run_cli(["train", "--out", "/proc/self/marl_run", *TINY], capsys)
        assert_one_line_error(code, err, "cannot create run directory")
    if os.geteuid() == 0:
        pytest.skip("root ignores directory permissions")
    locked = tmp_path / "readonly"
    locked.mkdir(mode=0o500)
    try:
        code, err = run_cli(["train", "--out", locked / "run", *TINY], capsys)
        assert_one_line_error(code, err, "cannot create run directory")
        code, err = run_cli(["train", "--out", locked, *TINY], capsys)
        assert_one_line_error(code, err, "is not writable")
    finally:
        locked.chmod(0o700)
    assert list(locked.iterdir()) == []


# -- resume, eval and table on an existing run: the directory must be unchanged -----------------------------------
def _break_checkpoint(run: Path, how: str) -> None:
    path = run / "checkpoint.pt"
    if how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "garbage":
        path.write_bytes(os.urandom(4096))
    elif how == "missing":
        path.unlink()
    elif how == "not_a_dict":
        import torch

        torch.save([1, 2, 3], path)
    elif how == "wrong_shapes":
        import torch

        state = torch.load(path, weights_only=False)
        state["algo"]["agents"][0]["policy"] = {"net.0.weight": torch.zeros(2, 2)}
        torch.save(state, path)


RUN_CASES = [
    # (argv with {run} for the run directory, how to damage the run first, expected text)
    (["train", "--resume", "{run}", "--set", "admm.penalty=5"], None, "admm.penalty: 1.0 -> 5.0"),
    (["train", "--resume", "{run}", "--algo", "itrpo"], None, "algo: 'matrpo' -> 'itrpo'"),
    (["train", "--resume", "{run}", "--env", "treasure_collection"], None, "env.name"),
    (["train", "--resume", "{run}", "--seed", "3"], None, "seed: 0 -> 3"),
    (["train", "--resume", "{run}", "--steps", "200"], None, "below the 400 steps"),
    (["train", "--resume", "{run}", "--config", "{run}_seed3.toml"], None, "seed: 0 -> 3"),
    (["train", "--resume", "{run}", "--out", "{run}_other"], None, "name different run directories"),
    (["train", "--resume", "{run}_missing"], None, "no such directory"),
    (["train", "--resume", ""], None, "--resume must be a non-empty path"),
    (["train", "--out", "{run}"], None, "already holds a run"),
    (["train", "--resume", "{run}", "--steps", "800"], "empty", "not a readable checkpoint"),
    (["train", "--resume", "{run}", "--steps", "800"], "truncated", "not a readable checkpoint"),
    (["train", "--resume", "{run}", "--steps", "800"], "garbage", "not a readable checkpoint"),
    (["train", "--resume", "{run}", "--steps", "800"], "missing", "no checkpoint at"),
    (["train", "--resume", "{run}", "--steps", "800"], "not_a_dict", "not a checkpoint of this package"),
    (["train", "--resume", "{run}", "--steps", "800"], "wrong_shapes", "does not match"),
    (["eval", "{run}"], "empty", "not a readable checkpoint"),
    (["eval", "{run}"], "garbage", "not a readable checkpoint"),
    (["eval", "{run}"], "wrong_shapes", "does not match"),
    (["eval", "{run}", "--episodes", "0"], None, "episodes must be >= 1"),
    (["eval", "{run}", "--seed", "-3"], None, "seed must be >= 0"),
    (["eval", "{run}_missing"], None, "no such directory"),
    (["table", "{run}", "--at", "400", "--window", "0"], None, "--window) must be >= 1"),
    (["table", "{run}", "--at", "400", "--window", "-2"], None, "--window) must be >= 1"),
    (["table", "{run}", "--at", "400", "--window", "3"], None, "needs 3 iterations"),
    (["table", "{run}", "--at", "300"], None, "not an iteration boundary"),
    (["table", "{run}", "--at", "100000"], None, "no run reached"),
    (["table", "{run}", "--at", "0"], None, "--at) must be >= 1"),
    (["table", "{run}_missing", "--at", "400"], None, "no metrics.csv"),
    (["plot", "{run}", "--smooth", "0", "-o", "{run}_curves.png"], None, "smooth must be >= 1"),
    (["plot", "{run}", "--smooth", "50", "-o", "{run}_curves.png"], None, "longer than the 2 rows"),
    (["plot", "{run}", "-o", "{run}/config.json/curves.png"], None, "cannot write the plot"),
    (["train", "--resume", "{run}"], "missing", "stopped before its first checkpoint"),
    (["plot", "{run}", "--metric", "nope", "-o", "{run}_curves.png"], None, "metric 'nope' not in"),
]


@pytest.mark.parametrize(("argv", "damage", "message"), RUN_CASES,
                         ids=[f"{' '.join(a[:2])}-{d}-{m[:20]}" for a, d, m in RUN_CASES])
def test_run_directory_bad_input(run_copy, capsys, argv, damage, message):
    Path(f"{run_copy}_seed3.toml").write_text("seed = 3\n")
    if damage:
        _break_checkpoint(run_copy, damage)
    before = snapshot(run_copy)
    code, err = run_cli([a.replace("{run}", str(run_copy)) for a in argv], capsys)
    assert_one_line_error(code, err, message)
    assert snapshot(run_copy) == before
    assert not Path(f"{run_copy}_other").exists() and not Path(f"{run_copy}_missing").exists()


def test_resume_accepts_same_settings_and_honours_steps(run_copy, capsys):
    """Repeating the saved settings is no conflict; --steps extends the run (and may end it before the saved total)."""
    code, _ = run_cli(["train", "--resume", run_copy, "--algo", "matrpo", "--seed", "0", "--steps", "800",
                       "--set", "torch_threads=1", "--no-progress"], capsys)
    assert code == 0
    rows = (run_copy / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 4
    code, err = run_cli(["train", "--resume", run_copy, "--steps", "600", "--no-progress"], capsys)
    assert_one_line_error(code, err, "below the 800 steps")


# -- end to end: exit code and no traceback from the real command line --------------------------------------------
@pytest.mark.parametrize(("argv", "message"), [
    (["train", "--set", "trpo.cg_max_iter=2.5"], "trpo.cg_max_iter must be an integer"),
    (["train", "--resume", "{tmp}/nothing"], "no such directory"),
    (["table", "{tmp}/nothing", "--at", "10"], "no metrics.csv"),
])
def test_cli_subprocess_exit_code(tmp_path, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    out = subprocess.run([sys.executable, "-m", "marl", *argv, "--out", str(tmp_path / "run")]
                         if argv[0] == "train" and "--resume" not in argv else [sys.executable, "-m", "marl", *argv],
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [out.stderr.strip()] and out.stderr.startswith("error: ")
    assert message in out.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "runs").exists()


# -- the config API: the same checks without the CLI --------------------------------------------------------------
@pytest.mark.parametrize(("factory", "message"), [
    (lambda: EnvConfig(n_envs=2.5), "env.n_envs must be an integer"),
    (lambda: EnvConfig(n_agents=True), "env.n_agents must be an integer"),
    (lambda: TRPOConfig(damping=float("nan")), "trpo.damping must be a finite number"),
    (lambda: TRPOConfig(warm_start_cg="yes"), "trpo.warm_start_cg must be true or false"),
    (lambda: ADMMConfig(penalty=float("inf")), "admm.penalty must be a finite number"),
    (lambda: ADMMConfig(graph=3), "admm.graph must be a string"),
    (lambda: TrainConfig(env={"n_agents": 3}), "env must be the [env] table (EnvConfig)"),
    (lambda: TrainConfig(hidden_sizes=(64, 2.5)), "hidden_sizes[1] must be an integer"),
    (lambda: TrainConfig(hidden_sizes="64"), "hidden_sizes must be a list"),
    (lambda: TrainConfig(torch_threads=0), "torch_threads must be > 0"),
    (lambda: config_from_dict([1, 2]), "must be a mapping"),
    (lambda: config_from_dict({"env": {1: 2, "x": 3}}), "unknown key(s)"),
    (lambda: apply_overrides(TrainConfig(), ["vf_epochs=-1"]), "vf_epochs must be >= 0"),
])
def test_config_api_bad_values(factory, message):
    with pytest.raises(ValueError) as info:
        factory()
    assert message in str(info.value)


def test_config_accepts_numpy_numbers_and_normalises_them():
    np = pytest.importorskip("numpy")
    cfg = TrainConfig(seed=np.int64(3), vf_lr=np.float32(0.5), hidden_sizes=[np.int32(8), 8],
                      env=EnvConfig(n_envs=np.int16(5)))
    assert type(cfg.seed) is int and type(cfg.vf_lr) is float and cfg.hidden_sizes == (8, 8)
    assert type(cfg.env.n_envs) is int


# -- environments (minor items of issue 15) -----------------------------------------------------------------------
@pytest.mark.parametrize(("make", "act", "error", "message"), [
    (lambda: cooperative_navigation_v0.parallel_env(), lambda agents: {a: True for a in agents}, TypeError,
     "must be an integer, got True"),
    (lambda: cooperative_navigation_v0.parallel_env(), lambda agents: [0] * len(agents), TypeError,
     "actions must be a dict"),
    (lambda: cooperative_navigation_v0.parallel_env(continuous_actions=True),
     lambda agents: {a: [0.5 + 1j] * 5 for a in agents}, TypeError, "got dtype complex"),
    (lambda: cooperative_navigation_v0.parallel_env(continuous_actions=True),
     lambda agents: {a: [True] * 5 for a in agents}, TypeError, "got dtype bool"),
])
def test_env_rejects_bad_actions(make, act, error, message):
    env = make()
    env.reset(seed=0)
    with pytest.raises(error, match=message):
        env.step(act(env.possible_agents))


def test_env_step_before_reset_says_so():
    env = treasure_collection_v0.parallel_env(n_agents=4)
    with pytest.raises(RuntimeError, match=r"call reset\(\) before the first step"):
        env.step({a: 0 for a in env.possible_agents})


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"n_agents": "3"}, TypeError, "n_agents must be an int, got str"),
    ({"n_agents": 3.0}, TypeError, "n_agents must be an int, got float"),
    ({"n_agents": 2}, ValueError, "n_agents must be >= 3"),
    ({"render_size": 20000}, ValueError, r"render_size must be in \[16, 4096\]"),
    ({"n_agents": 10**9}, ValueError, r"n_agents must be in \[1, 1024\]"),
    ({"n_treasures": 10**9}, ValueError, r"n_treasures must be in \[1, 1024\]"),
    ({"continuous_actions": "no"}, TypeError, "continuous_actions must be True or False, got 'no'"),
])
def test_treasure_constructor_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        treasure_collection_v0.parallel_env(**kwargs)


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"n_agents": 10**9}, ValueError, r"n_agents must be in \[2, 1024\]"),
    ({"local_ratio": "0.5"}, TypeError, "local_ratio must be a real number"),
    ({"clip_actions": "false"}, TypeError, "clip_actions must be True or False"),
])
def test_navigation_constructor_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        cooperative_navigation_v0.parallel_env(**kwargs)
