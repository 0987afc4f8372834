"""Trust-region policy optimization building blocks in PyTorch (no agents, no graphs).

Flat parameters, action distributions with exact KL, conjugate gradient, Fisher-vector products (exact and fast
Gauss-Newton), step length, backtracking line search with HARL's and MATRPO's acceptance rules, the composed
``trust_region_step``, GAE, and value-function regression. Only PyTorch and NumPy are used (STYLE.md §1).
"""

from .cg import CGInfo, conjugate_gradient
from .distributions import Categorical, DiagGaussian, Distribution, MultiCategorical, MultiDiagGaussian, kl_divergence
from .fisher import FisherVectorProduct, fisher_vector_product, functional_fisher_vector_product, subsample
from .gae import compute_gae
from .params import flat_grad, flat_params, n_parameters, set_flat_params, trainable_parameters, unflatten
from .settings import GAESettings, TRPOSettings, ValueFitSettings
from .step import (
    LineSearchResult,
    StepInfo,
    StepStatus,
    backtracking_line_search,
    max_step_length,
    natural_gradient_direction,
    trust_region_step,
)
from .value import ValueFitInfo, ValueFitter, fit_stacked

__all__ = [
    "CGInfo",
    "Categorical",
    "DiagGaussian",
    "Distribution",
    "FisherVectorProduct",
    "GAESettings",
    "LineSearchResult",
    "MultiCategorical",
    "MultiDiagGaussian",
    "StepInfo",
    "StepStatus",
    "TRPOSettings",
    "ValueFitInfo",
    "ValueFitSettings",
    "ValueFitter",
    "backtracking_line_search",
    "compute_gae",
    "conjugate_gradient",
    "fisher_vector_product",
    "fit_stacked",
    "flat_grad",
    "flat_params",
    "functional_fisher_vector_product",
    "kl_divergence",
    "max_step_length",
    "n_parameters",
    "natural_gradient_direction",
    "set_flat_params",
    "subsample",
    "trainable_parameters",
    "trust_region_step",
    "unflatten",
]
