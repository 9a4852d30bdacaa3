"""The operator registry (fleetvote.engine.ops) is the one list of layer kinds: the loader, the
engine's kernels, the code generator, the firmware's op enum and the firmware bench all read it."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
import subprocess
import sys

import pytest
from conftest import ROOT

from fleetvote.engine import kernels, loader, ops
from fleetvote.offline import codegen

OPS_HEADER = ROOT / "firmware" / "core" / "fv_ops.h"


def _enum(text: str) -> dict[str, int]:
    return {m[1]: int(m[2]) for m in re.finditer(r"^\s*(FV_OP_\w+)\s*=\s*(\d+),", text, re.M)}


def test_committed_op_header_is_the_generated_one():
    assert OPS_HEADER.read_text() == codegen.generate_ops_header(), (
        "firmware/core/fv_ops.h is stale: run `make -C firmware ops-header` and commit it")


def test_an_op_added_to_the_registry_without_regenerating_fails_the_header_check(monkeypatch):
    new = ops.Op("HARD_SWISH", 117, len(ops.OPS) + 1, ops.Reshape, "fv_hard_swish_params")
    monkeypatch.setattr(ops, "OPS", ops.OPS + (new,))
    generated = codegen.generate_ops_header()
    assert _enum(generated)["FV_OP_HARD_SWISH"] == len(ops.OPS)
    assert "#define FV_OP_LAST FV_OP_HARD_SWISH" in generated
    assert OPS_HEADER.read_text() != generated


def test_op_numbers_are_dense_from_one_and_the_header_states_them():
    assert [o.number for o in ops.OPS] == list(range(1, len(ops.OPS) + 1))
    assert _enum(OPS_HEADER.read_text()) == {o.c_name: o.number for o in ops.OPS}
    assert f"#define FV_OP_LAST {ops.OPS[-1].c_name}" in OPS_HEADER.read_text()
    assert "typedef enum" not in (ROOT / "firmware" / "core" / "fv_model.h").read_text()


def test_the_loader_and_the_engine_read_the_registry():
    assert loader.SUPPORTED_OPS == {o.tflite: o.builtin for o in ops.OPS}
    assert set(ops.KERNELS) == set(loader.SUPPORTED_OPS)
    assert not hasattr(kernels, "KERNELS")
    import tflite  # the builtin codes are the schema's
    assert all(getattr(tflite.BuiltinOperator, o.tflite) == o.builtin for o in ops.OPS)


def test_codegen_has_one_emitter_per_registered_op_and_no_kernel_class_ladder():
    assert set(codegen.EMITTERS) == set(ops.BY_NAME)
    assert "isinstance(kern" not in (ROOT / "service" / "fleetvote" / "offline" / "codegen.py").read_text()


def test_codegen_refuses_to_import_when_an_op_has_no_emitter(monkeypatch):
    extra = dict(ops.BY_NAME, HARD_SWISH=None)
    monkeypatch.setattr(ops, "BY_NAME", extra)
    spec = importlib.util.spec_from_file_location("fleetvote.offline._codegen_copy", codegen.__file__)
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, mod)
    with pytest.raises(ImportError, match="HARD_SWISH"):
        spec.loader.exec_module(mod)


def test_firmware_bench_labels_come_from_the_registry():
    out = subprocess.run([sys.executable, "-c", "import bench_firmware as b; print(sorted(b.KINDS.items()))"],
                         cwd=ROOT / "firmware" / "tools", capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(sorted((o.number, o.label) for o in ops.OPS))
    assert "KINDS = {o.number: o.label for o in OPS}" in (ROOT / "firmware" / "tools" / "bench_firmware.py").read_text()


def test_the_registry_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        ops.OPS[0].number = 99
