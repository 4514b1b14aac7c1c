"""The compile flow and the other library halves of the ``bitline`` commands.

The compile flow is a declared list of named steps (:data:`COMPILE_STEPS`), each a function
of its inputs that returns new values (nothing is mutated after it is made):

1. :func:`resolve_target` / :func:`bitline.sw.models.resolve_model` -- the float IR model;
2. :func:`calibration_inputs` -- the data set's ``calib`` split, or seeded random
   non-negative inputs for models without a data set (results are labelled *synthetic*);
3. :func:`size_hardware` -- the accelerator config the program will run on. With
   ``--xbars auto`` it sizes the machine to the network (layer-job capacity,
   ``max_weight_bits``, ``n_xbars``, ``max_entries``; it quantizes and maps to measure) and
   returns one :class:`Sizing` record per field it chose; with a unit count it only sets
   ``n_xbars``. No later step changes the config;
4. :func:`quantize` -- :func:`bitline.sw.quant.quantize_model` for that config;
5. :func:`map_program` -- :func:`bitline.sw.mapping.map_model` onto that config;
6. :func:`validate` -- the one OU-program validator of :mod:`bitline.hw.spec.program`;
7. :func:`bitline.sw.bundle.write_bundle` -- the program bundle (:func:`compile_bundle`).

:func:`compile_model` runs steps 3-6; :func:`compile_bundle` runs 1-7 and writes the
``compile.json`` side file. With ``network=True`` (``compile --network``) step 5 is followed
by :func:`network_program`: the whole-network nodes and the config's whole-network fields
(docs/network.md section 2). :func:`compare_strategies` runs steps 3-6 and
:func:`bitline.sw.perf.analyze` for several strategies, the ``bwq-a`` variant and the
named ISAAC baselines (:mod:`bitline.sw.flow.baselines`: ``isaac-ou-16b``, ``isaac-ou-8b``,
``isaac-paper``) and computes speedups and energy savings named after their reference row;
see docs/performance.md section 6 for each row's quantization and hardware.

The accuracy evaluation and the non-ideality sweep need the golden model and the executor,
so their library halves live in :mod:`bitline.sim.evaluate` and :mod:`bitline.sim.sweep`
(``sw`` never imports ``sim``); the run backends are in :mod:`bitline.sim.backends`.
"""

from __future__ import annotations

from bitline.sw.flow.baselines import VARIANTS, NamedRun
from bitline.sw.flow.compare import (
    BASELINE_BUDGETS,
    BASELINES,
    DEFAULT_ROWS,
    DEFAULT_SPECS,
    ROW_NAMES,
    compare_strategies,
    strategy_specs,
)
from bitline.sw.flow.compile import (
    COMPILE_SIDECAR,
    COMPILE_STEPS,
    WIDEST_WEIGHT_BITS,
    CompileResult,
    HardwarePlan,
    Sizing,
    compile_bundle,
    compile_model,
    map_program,
    network_program,
    quantize,
    resolve_spec,
    size_hardware,
    validate,
)
from bitline.sw.flow.inputs import (
    BUNDLE_MANIFEST,
    CALIB_SEED,
    DEFAULT_PRESET,
    SYNTHETIC_CALIB_SAMPLES,
    Target,
    calibration_inputs,
    is_synthetic,
    load_config,
    load_input,
    model_dataset,
    model_labels,
    model_summary,
    parse_xbars,
    preset_summary,
    require_dataset,
    resolve_target,
)

__all__ = [
    "DEFAULT_PRESET", "DEFAULT_SPECS", "DEFAULT_ROWS", "ROW_NAMES", "BASELINES", "VARIANTS",
    "NamedRun", "BASELINE_BUDGETS", "CALIB_SEED", "SYNTHETIC_CALIB_SAMPLES",
    "WIDEST_WEIGHT_BITS", "BUNDLE_MANIFEST", "COMPILE_SIDECAR", "COMPILE_STEPS",
    "Sizing", "HardwarePlan", "CompileResult", "Target",
    "load_config", "preset_summary", "parse_xbars", "is_synthetic", "resolve_target",
    "model_dataset", "require_dataset", "calibration_inputs", "model_labels",
    "model_summary", "load_input",
    "size_hardware", "quantize", "resolve_spec", "map_program", "validate", "compile_model",
    "compile_bundle", "network_program", "strategy_specs", "compare_strategies",
]
