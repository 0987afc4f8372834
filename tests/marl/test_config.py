"""TrainConfig: Table III defaults, validation naming the field, file loading, overrides, unknown keys."""

from __future__ import annotations

import dataclasses

import pytest

from marl.config import ADMMConfig, EnvConfig, TrainConfig, TRPOConfig, apply_overrides, config_from_dict, load_config


@pytest.mark.parametrize(
    ("env", "n", "max_kl", "iters", "penalty"),
    [
        ("cooperative_navigation", 3, 0.003, 100, 1.0),
        ("cooperative_navigation", 6, 0.003, 150, 1.0),
        ("treasure_collection", 8, 0.001, 200, 5.0),
        ("treasure_collection", 12, 0.001, 500, 5.0),
    ],
)
def test_table_iii_defaults(env, n, max_kl, iters, penalty):
    cfg = TrainConfig(env=EnvConfig(name=env, n_agents=n))
    assert (cfg.max_kl, cfg.admm_iterations, cfg.admm_penalty) == (max_kl, iters, penalty)
    resolved = cfg.resolved()
    assert resolved.trpo.max_kl == max_kl and resolved.admm.iterations == iters and resolved.admm.penalty == penalty


def test_paper_defaults():
    cfg = TrainConfig()
    assert cfg.algo == "matrpo" and cfg.env.name == "cooperative_navigation" and cfg.env.n_agents == 3
    assert (cfg.gamma, cfg.gae_lambda, cfg.steps_per_iter, cfg.hidden_sizes, cfg.activation) == (
        0.995, 0.95, 10_000, (128, 128), "selu")
    assert cfg.env.max_cycles == 100 and cfg.admm.graph == "ring"


@pytest.mark.parametrize(
    ("factory", "field"),
    [
        (lambda: TrainConfig(algo="ppo"), "algo"),
        (lambda: TrainConfig(gamma=1.5), "gamma"),
        (lambda: TrainConfig(steps_per_iter=1001), "steps_per_iter"),
        (lambda: EnvConfig(n_agents=1), "env.n_agents"),
        (lambda: EnvConfig(reward_mode="team"), "env.reward_mode"),
        (lambda: TRPOConfig(max_kl=-1.0), "trpo.max_kl"),
        (lambda: TRPOConfig(backtrack_coeff=1.0), "trpo.backtrack_coeff"),
        (lambda: ADMMConfig(drop_prob=1.0), "admm.drop_prob"),
        (lambda: ADMMConfig(edge_order="sorted"), "admm.edge_order"),
        (lambda: ADMMConfig(graph="hypercube"), "admm.graph"),
    ],
)
def test_invalid_values_name_the_field(factory, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        factory()


def test_unknown_keys_rejected():
    with pytest.raises(ValueError, match="unknown config key 'learning_rate'"):
        config_from_dict({"learning_rate": 1})
    with pytest.raises(ValueError, match="beta"):
        config_from_dict({"admm": {"beta": 5}})
    with pytest.raises(ValueError, match="unknown"):
        apply_overrides(TrainConfig(), ["admm.rho=3"])


def test_overrides_are_typed():
    cfg = apply_overrides(TrainConfig(), ["admm.penalty=5", "seed=3", "hidden_sizes=64,64", "trpo.max_kl=none",
                                          "admm.parallel_endpoints=false", "total_steps=1e6"])
    assert cfg.admm.penalty == 5.0 and isinstance(cfg.admm.penalty, float)
    assert cfg.seed == 3 and cfg.hidden_sizes == (64, 64) and cfg.trpo.max_kl is None
    assert cfg.admm.parallel_endpoints is False and cfg.total_steps == 1_000_000


@pytest.mark.parametrize("suffix", [".toml", ".yaml", ".json"])
def test_load_from_file_round_trip(tmp_path, suffix):
    path = tmp_path / f"cfg{suffix}"
    if suffix == ".toml":
        path.write_text('algo = "itrpo"\nseed = 7\n[env]\nn_agents = 6\n[admm]\nedge_order = "random"\n')
    elif suffix == ".yaml":
        path.write_text("algo: itrpo\nseed: 7\nenv:\n  n_agents: 6\nadmm:\n  edge_order: random\n")
    else:
        path.write_text('{"algo": "itrpo", "seed": 7, "env": {"n_agents": 6}, "admm": {"edge_order": "random"}}')
    cfg = load_config(path)
    assert cfg.algo == "itrpo" and cfg.seed == 7 and cfg.env.n_agents == 6 and cfg.admm.edge_order == "random"
    # the saved form reloads to the same object
    assert config_from_dict(dataclasses.asdict(cfg)) == cfg


def test_bad_file_suffix(tmp_path):
    path = tmp_path / "cfg.ini"
    path.write_text("")
    with pytest.raises(ValueError, match="toml"):
        load_config(path)


# -- old key spellings (issue 16: one spelling per setting; the [trpo] keys are trpo_core.TRPOSettings's names) -----
OLD_TRPO_KEYS = [  # (old key, new key, a valid non-default value)
    ("cg_iters", "cg_max_iter", 7),
    ("cg_iters_warm", "cg_max_iter_warm", 3),
    ("cg_damping", "damping", 0.05),
    ("fvp_subsample", "fvp_subsample_every", 2),
    ("ls_steps", "max_backtracks", 4),
    ("ls_backtrack", "backtrack_coeff", 0.7),
]


@pytest.mark.parametrize(("old", "new", "value"), OLD_TRPO_KEYS)
def test_old_trpo_key_in_a_toml_file_warns_and_sets_the_new_key(tmp_path, old, new, value):
    path = tmp_path / "old.toml"
    path.write_text(f"[trpo]\n{old} = {value}\n")
    with pytest.warns(FutureWarning, match=rf"'trpo\.{old}' is deprecated; use 'trpo\.{new}'"):
        cfg = load_config(path)
    assert getattr(cfg.trpo, new) == value
    assert cfg == dataclasses.replace(TrainConfig(), trpo=dataclasses.replace(TRPOConfig(), **{new: value}))


@pytest.mark.parametrize(("old", "new", "value"), OLD_TRPO_KEYS)
def test_old_trpo_key_in_an_override_warns_and_sets_the_new_key(old, new, value):
    with pytest.warns(FutureWarning, match=rf"use 'trpo\.{new}'"):
        cfg = apply_overrides(TrainConfig(), [f"trpo.{old}={value}"])
    assert getattr(cfg.trpo, new) == value


def test_an_error_about_an_old_key_names_it_as_spelled():
    with pytest.warns(FutureWarning), pytest.raises(ValueError, match=r"^trpo\.cg_iters must be an integer"):
        apply_overrides(TrainConfig(), ["trpo.cg_iters=2.5"])
    with pytest.warns(FutureWarning), pytest.raises(ValueError, match=r"trpo\.ls_backtrack must be in \(0, 1\)"):
        config_from_dict({"trpo": {"ls_backtrack": 1.5}})


def test_a_key_under_both_spellings_is_an_error():
    with pytest.warns(FutureWarning), pytest.raises(ValueError, match="'trpo.cg_max_iter' is given twice"):
        config_from_dict({"trpo": {"cg_iters": 5, "cg_max_iter": 5}})


def test_new_spellings_do_not_warn(recwarn):
    cfg = apply_overrides(TrainConfig(), [f"trpo.{new}={value}" for _, new, value in OLD_TRPO_KEYS])
    assert [getattr(cfg.trpo, new) for _, new, _ in OLD_TRPO_KEYS] == [v for *_, v in OLD_TRPO_KEYS]
    assert not [w for w in recwarn if issubclass(w.category, FutureWarning)]


def test_removed_log_every_is_read_and_ignored_with_a_warning(tmp_path):
    """TrainConfig.log_every was never read and is gone; files, overrides and old run configs holding it still load."""
    path = tmp_path / "old.toml"
    path.write_text("log_every = 5\nseed = 2\n")
    with pytest.warns(FutureWarning, match="'log_every' is ignored"):
        assert load_config(path) == TrainConfig(seed=2)
    with pytest.warns(FutureWarning, match="'log_every' is ignored"):
        assert apply_overrides(TrainConfig(), ["log_every=3"]) == TrainConfig()
    assert not hasattr(TrainConfig(), "log_every")


# -- the config edge: each algorithm's own settings (marl.algos.from_config) ------------------------------------------
def test_settings_built_from_the_config_resolve_table_iii():
    from marl.algos import learner_settings, matrpo_settings, trpo_settings

    cfg = apply_overrides(TrainConfig(), ["env.name=treasure_collection", "env.n_agents=8", "trpo.damping=0.02",
                                          "vf_epochs=0", "gae_lambda=0.9"])
    m, t, learner = matrpo_settings(cfg), trpo_settings(cfg), learner_settings(cfg)
    assert (m.iterations, m.penalty, t.max_kl) == (200, 5.0, 0.001)  # Table III, treasure N=8
    assert t.damping == 0.02 and t.acceptance == "matrpo" and t.kl_bound == pytest.approx(1.5 * 0.001)
    assert learner.value_fit is None and learner.gae.lam == 0.9 and learner.gae.gamma == cfg.gamma


@pytest.mark.parametrize(("field", "value", "message"), [
    ("iterations", 0, r"MATRPOSettings\.iterations must be an integer >= 1"),
    ("penalty", -1.0, r"MATRPOSettings\.penalty must be a finite float > 0"),
    ("edge_order", "shuffled", r"MATRPOSettings\.edge_order must be one of"),
    ("drop_prob", 1.0, r"MATRPOSettings\.drop_prob must be in \[0, 1\)"),
    ("cg_max_iter_warm", True, r"MATRPOSettings\.cg_max_iter_warm must be an integer >= 1"),
])
def test_matrpo_settings_reject_bad_values_naming_the_field(field, value, message):
    from marl.algos import matrpo_settings

    with pytest.raises(ValueError, match=message):
        dataclasses.replace(matrpo_settings(TrainConfig()), **{field: value})


@pytest.mark.parametrize(("field", "value", "message"), [
    ("hidden_sizes", (), "hidden_sizes must be a non-empty tuple"),
    ("activation", "gelu", "activation must be one of"),
    ("gae_boundaries", "cut", "gae_boundaries must be one of"),
    ("sampling_noise", "common", "sampling_noise must be one of"),
    ("gae", (0.99, 0.95), "gae must be a trpo_core.GAESettings"),
])
def test_learner_settings_reject_bad_values_naming_the_field(field, value, message):
    from marl.algos import learner_settings

    with pytest.raises(ValueError, match=message):
        dataclasses.replace(learner_settings(TrainConfig()), **{field: value})
