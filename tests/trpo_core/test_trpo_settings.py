"""TRPOSettings, GAESettings, ValueFitSettings: frozen, validated in __post_init__, from_dict rejects unknown keys."""

from __future__ import annotations

import dataclasses

import pytest

from trpo_core import GAESettings, TRPOSettings, ValueFitSettings


@pytest.mark.parametrize("cls", [TRPOSettings, GAESettings, ValueFitSettings])
def test_defaults_are_valid_and_frozen(cls):
    s = cls()
    field = dataclasses.fields(cls)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(s, field, getattr(s, field))


@pytest.mark.parametrize(
    "cls,field,value",
    [
        (TRPOSettings, "max_kl", 0.0),
        (TRPOSettings, "max_kl", float("nan")),
        (TRPOSettings, "damping", -0.1),
        (TRPOSettings, "cg_max_iter", 0),
        (TRPOSettings, "cg_max_iter", 2.5),
        (TRPOSettings, "cg_residual_tol", -1.0),
        (TRPOSettings, "acceptance", "trpo"),
        (TRPOSettings, "backtrack_coeff", 1.0),
        (TRPOSettings, "backtrack_coeff", 0.0),
        (TRPOSettings, "max_backtracks", 0),
        (TRPOSettings, "accept_ratio", -0.5),
        (TRPOSettings, "kl_slack", 0.9),
        (TRPOSettings, "fisher_form", "hessian"),
        (TRPOSettings, "fvp_subsample_every", 0),
        (GAESettings, "gamma", 1.01),
        (GAESettings, "gamma", -0.01),
        (GAESettings, "lam", 2.0),
        (ValueFitSettings, "lr", 0.0),
        (ValueFitSettings, "epochs", 0),
        (ValueFitSettings, "minibatch_size", 0),
        (ValueFitSettings, "max_grad_norm", -1.0),
    ],
)
def test_invalid_field_raises_value_error_naming_it(cls, field, value):
    with pytest.raises(ValueError, match=field):
        cls(**{field: value})


def test_replace_revalidates():
    with pytest.raises(ValueError, match="max_kl"):
        dataclasses.replace(TRPOSettings(), max_kl=-1.0)


@pytest.mark.parametrize("cls", [TRPOSettings, GAESettings, ValueFitSettings])
def test_from_dict_rejects_unknown_keys(cls):
    with pytest.raises(ValueError, match="unknown"):
        cls.from_dict({"not_a_field": 1})
    assert cls.from_dict({}) == cls()


def test_presets():
    harl, matrpo = TRPOSettings.harl(), TRPOSettings.matrpo()
    assert (harl.acceptance, harl.damping, harl.backtrack_coeff) == ("harl", 0.1, 0.8)
    assert (matrpo.acceptance, matrpo.damping, matrpo.backtrack_coeff) == ("matrpo", 0.01, 0.5)
    assert matrpo.fvp_subsample_every == 5 and matrpo.kl_slack == 1.5
    assert matrpo.kl_bound == pytest.approx(1.5 * matrpo.max_kl) and harl.kl_bound == harl.max_kl
    assert TRPOSettings.matrpo(max_kl=0.002).max_kl == 0.002
