"""The offline tools: what measures, checks and documents the models and the fleet on this
machine, before or beside any service: evaluation (``evaluate``, ``ensemble_eval``,
``robustness``), the model cards (``cards``), the layer table (``analyze``), the firmware's C
sources (``codegen``), the tflite-micro oracle and the bit-exact check (``oracle``, ``verify``),
training curves (``curves``), the bill of materials (``bom``), accuracy against cost
(``pareto``), the zoo's history (``retire``) and README's results table (``results_table``).

Import rule: these modules may import the runtime (``fleetvote.engine``, ``fleetvote.data`` ...)
and ``fleetvote.command``; never the test bed, and the runtime never imports them
(tests/test_architecture.py). Heavy packages (TensorFlow, tflite-micro, matplotlib) are imported
inside the functions that need them, so ``fleetvote --help`` works without the ``train`` extra."""
