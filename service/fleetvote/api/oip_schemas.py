"""Request and response models of the Open Inference Protocol (KServe v2, Triton's HTTP API), as
its HTTP/REST binding defines them:
https://github.com/kserve/open-inference-protocol/blob/main/specification/protocol/inference_rest.md
and the binary tensor data extension that ``tritonclient`` and perf_analyzer use by default:
https://github.com/triton-inference-server/server/blob/main/docs/protocol/extension_binary_data.md

The routes are in ``routes/oip.py``; what the fleet's models take and give (``image``, ``label``,
``scores``, ...) is ``FLEET_OUTPUTS``, ``MEMBER_OUTPUTS`` and ``IMAGE`` here."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

# A parameter's value is a bool, a number or a string (the protocol's $parameter). Strict: "1" is
# not a number and 1 is not true, so that a mistyped option is refused, never reinterpreted.
Parameter = StrictBool | StrictInt | StrictFloat | StrictStr
Parameters = dict[str, Parameter]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1 for a dimension of any size (the batch)")


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class ServerLive(BaseModel):
    live: bool


class ServerReady(BaseModel):
    ready: bool


class ModelReady(BaseModel):
    name: str
    ready: bool


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class RequestInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    shape: list[int] = Field(description="[N, 32, 32, 3] for image")
    datatype: str
    parameters: Parameters | None = Field(None, description="binary_data_size: the tensor follows the JSON "
                                                            "header as that many raw bytes")
    data: list[Any] | None = Field(None, description="the values, row-major, flat or nested; absent when binary")


class RequestOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    parameters: Parameters | None = Field(None, description="binary_data: true for raw bytes after the header")


class InferRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, description="echoed in the response")
    parameters: Parameters | None = Field(None, description="strategy, deadline_ms, fallback (as /classify's "
                                                            "query); binary_data_output")
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = Field(None, description="default: every output of the model")


class ResponseOutput(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    parameters: Parameters | None = None
    data: list[float] | None = Field(None, description="row-major, flat; absent when sent as binary")


class InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    parameters: Parameters = Field(description="ensemble_version, strategy, and which members answered from "
                                               "boards, which the engine stood in for (fallbacks) and which "
                                               "spilled over to the engine because their boards' queues were full")
    outputs: list[ResponseOutput]


class OipError(BaseModel):
    error: str


# ---- the fleet's models --------------------------------------------------------------------------

VERSION = "1"  # one version of each model: a reload replaces the ensemble, it does not add versions
IMAGE = TensorMetadata(name="image", datatype="UINT8", shape=[-1, 32, 32, 3])


def fleet_outputs(members: int) -> list[TensorMetadata]:
    """The `fleet` model's outputs: the fused label and scores, and every member's probabilities
    in the order of GET /ensemble."""
    return [TensorMetadata(name="label", datatype="INT32", shape=[-1]),
            TensorMetadata(name="scores", datatype="FP32", shape=[-1, 10]),
            TensorMetadata(name="member_probabilities", datatype="FP32", shape=[-1, members, 10])]


# A member model: its label, its probabilities, and the int8 softmax bytes its board (or the
# engine, bit-exact with it) computed.
MEMBER_OUTPUTS = [TensorMetadata(name="label", datatype="INT32", shape=[-1]),
                  TensorMetadata(name="scores", datatype="FP32", shape=[-1, 10]),
                  TensorMetadata(name="output", datatype="INT8", shape=[-1, 10])]


def inline_schema(model: type[BaseModel]) -> dict:
    """``model``'s JSON schema with its definitions substituted in place: an OpenAPI request body
    documented by hand (the route reads the body itself, for the binary extension) cannot point
    into the document's components."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node):
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return resolve(schema)
