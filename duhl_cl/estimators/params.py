"""The estimators' parameters: the ones every estimator has, once, and their documentation.

scikit-learn reads an estimator's parameters from the signature of its ``__init__``, which
must store each one under its own name, unchanged. Rather than copy the fourteen common
parameters into five signatures, each estimator names its own (``own_params``) and
:func:`make_init` builds an ``__init__`` whose signature is those followed by
:data:`COMMON` (keyword-only), so that ``get_params``, ``clone``, ``repr`` and
``inspect.signature`` see the full list; :data:`COMMON_DOC` documents them from the same
table.
"""

from __future__ import annotations

import inspect

__all__ = ["COMMON", "COMMON_DOC", "make_init"]

# (name, default, numpydoc type and description)
COMMON = (
    ("fit_intercept", True, "bool, default=True"),
    ("tol", 1e-4, "float\n    Stop when the certified duality gap <= tol * scale (see the module docstring)."),
    ("max_iter", 1000, "int\n    Maximum number of rounds (each: a selection, ``passes_per_round`` passes over it on\n    the device, and the gap updates)."),
    ("max_time", None, "float or None\n    Wall-clock limit in seconds."),
    ("warm_start", False, "bool\n    Start from the previous fit's solution."),
    ("random_state", None, "int, Generator or None\n    Seeds the shuffled order of the coordinates."),
    ("verbose", 0, "int\n    Print a line per round when > 0."),
    ("device", None, 'str, path, DeviceProfile or Device\n    Device profile name, a path to a profile, or an opened device; None: the host\'s CPU\n    ("pocl-cpu", or "intel-cpu" where PoCL cannot compile for this CPU).'),
    ("emulate", False, 'bool\n    Run the profile on the host\'s CPU device when its own device is absent (outputs say\n    "emulated").'),
    ("dtype", None, 'None, "float32" or "float64"\n    Device precision; None takes the profile\'s (float32 by default) and, on a device with\n    fp64, continues in float64 where float32 stalls above the tolerance\n    (``stats_["refinement"]``).'),
    ("memory_budget", None, 'None, int, str\n    Device memory this fit may use: bytes (an int), a size ("64MiB") or a fraction of the\n    data\'s device bytes ("10%"; a fraction written without a unit, 0.5 or "0.5", is\n    refused); None takes the profile\'s budget. More than the profile\'s budget is cut to\n    it, and a percentage above 100% is kept; both with a warning naming the bytes used.'),
    ("host_budget", None, 'None, int, str\n    X an on-disk store (duhl_cl.store.open): host memory for its coordinates (a host cache\n    of what the gap memory ranks next after the device, and the reads\' buffers): bytes,\n    a size ("2GiB") or a fraction of the store ("25%"); None: the whole store where half\n    of the memory this process can spare holds it, else that half. Ignored for X in\n    memory. Peak in ``stats_["host_peak"]``.'),
    ("policy", "duhl", '"duhl", "sequential", "random" or "full"\n    Which coordinates are resident each round (see duhl_cl.duhl.policies).'),
    ("passes_per_round", "auto", 'int or "auto"\n    Coordinate-descent passes over the visited set per round. "auto" (the default): as\n    many as make a round\'s device work about 2^20 units (Model.pass_cost: an entry of\n    the squared loss is one unit), so that a round\'s fixed host costs (2-3 ms) do not\n    dominate a small working set; at least 8 when the selection holds the whole active\n    problem, 4 while it rotates, at most 256 (duhl_cl.duhl.local_solver.auto_passes_for).'),
    ("kernel_variant", None, 'None, "serial", "tpa" or "bucketed"\n    The device\'s coordinate-descent pass; None takes the profile\'s. "serial": one\n    work-item, exact sequential descent; "tpa": a work-group per coordinate, atomic\n    updates (GPUs); "bucketed": disjoint buckets with private copies of the shared\n    vector, merged safely (multi-core CPUs).'),
)  # fmt: skip

_ATTRIBUTES = """
    Attributes
    ----------
    coef_ : ndarray of shape (n_features,), or (1, n_features) for the classifiers
    intercept_ : float, or ndarray of shape (1,) for the classifiers
    dual_gap_ : float
        Certified duality gap: objective_ - optimum <= dual_gap_.
    objective_ : float
    n_iter_ : int
        Rounds run.
    history_ : list of dict
        One record per round: round, time, gap (certified, or None), gap_estimate, objective,
        n_resident (on the device), n_visited (the selection the passes visit) and
        nnz_visited (its stored entries), n_swapped_in, bytes_h2d, bytes_d2h,
        n_gap_refreshes, passes, device_time (the round up to the end of its passes),
        pass_time (from the passes' launch to their end), host_time, cert_time,
        ledger_peak, dtype;
        and, X an on-disk store (zero otherwise): bytes_disk (read from the store's files
        in the round: refresh, certificate, the host cache's fill, incoming coordinates),
        in_from_host and in_from_disk (the round's incoming coordinates by the level they
        came from), host_peak (the host ledger's peak so far); a certified round also has
        cert_bounded, the coordinates its certificate bounded instead of reading
        (duhl_cl.duhl.certificate; 0 for X in memory).
    stats_ : dict
        bytes_h2d, bytes_d2h, ledger_peak, bank_peak (per memory bank), time,
        kernel_build_time (the seconds of ``time`` spent building kernels: the first fit on
        a device in a process builds them, later ones find them cached), stop_reason
        ("converged", "max_iter", "max_time", "interrupted" (Ctrl-C), "callback" or
        "callback error"), gap_target (tol x the objective's scale: a converged fit's
        certified gap is at most this; one-vs-rest: the largest class scale's), dtype,
        emulated, kernel_variant, budget, policy, entry_bytes (device bytes of a stored
        entry), refinement (None, or where a stalled float32 fit continued in float64),
        device_share (the share of the fit's time, less kernel builds, that the device's
        passes took), small_for_device (None, or a note that the fit, under 0.1 s, was
        mostly the rounds' fixed costs, where a host solver may be faster), and
        projected: the time the same rounds would take on the profile's device by its
        bandwidths (duhl_cl.projection; a model). X an on-disk store: bytes_disk (in
        total), host_peak and host_budget (the host ledger's peak and budget; None for X
        in memory), in_from_host and in_from_disk (incoming coordinates by level).
"""


def _doc(name, text):
    head, *rest = text.split("\n")
    return "\n".join([f"    {name} : {head}", *(f"    {line}" for line in rest)])


COMMON_DOC = "\n" + "\n".join(_doc(n, t) for n, _, t in COMMON) + "\n" + _ATTRIBUTES


def make_init(own_params, keyword_own=()):
    """An ``__init__`` taking ``own_params`` (name, default) positionally or by keyword,
    then ``keyword_own`` and :data:`COMMON` by keyword only, storing each as given."""
    P = inspect.Parameter
    sig = inspect.Signature(
        [P("self", P.POSITIONAL_OR_KEYWORD)]
        + [P(n, P.POSITIONAL_OR_KEYWORD, default=d) for n, d in own_params]
        + [P(n, P.KEYWORD_ONLY, default=d) for n, d in keyword_own]
        + [P(n, P.KEYWORD_ONLY, default=d) for n, d, _ in COMMON]
    )

    def __init__(self, *args, **kwargs):
        bound = sig.bind(self, *args, **kwargs)
        bound.apply_defaults()
        for name, value in list(bound.arguments.items())[1:]:
            setattr(self, name, value)

    __init__.__signature__ = sig
    return __init__
