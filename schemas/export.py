"""JSON Schema of the contract, for sources that validate in any language.

``schemas/json/`` holds the committed export (``make schema`` writes it; a test checks it
matches the models):

- ``submission.schema.json``: one submission, any type and version (``oneOf`` on ``type``).
- ``ledger-event.schema.json``: one exported ledger event.
- ``data/<Type>.v<N>.schema.json``: the ``data`` of each type at each version.
"""

from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import BaseModel, TypeAdapter, create_model

from schemas.envelope import LedgerEvent, Submission
from schemas.registry import EVENT_TYPES, payload_model, versions

Schema = dict[str, Any]
_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def payload_schema(type_name: str, version: int | None = None) -> Schema:
    model = payload_model(type_name, version)
    schema = model.model_json_schema()
    schema["$schema"] = _DIALECT
    return schema


def _typed_submission(type_name: str, version: int, latest: bool) -> type[BaseModel]:
    """The envelope narrowed to one type and version, for the ``oneOf`` of the full schema."""
    version_type: Any = Literal[version] | None if latest else Literal[version]
    fields: dict[str, Any] = {
        "type": (Literal[type_name], ...),
        "schema_version": (version_type, None if latest else ...),
        "data": (payload_model(type_name, version), ...),
    }
    model: type[BaseModel] = create_model(
        f"{type_name}V{version}Submission", __base__=Submission, **fields
    )
    return model


def submission_schema() -> Schema:
    variants = [
        _typed_submission(name, version, version == latest)
        for name, latest in EVENT_TYPES.items()
        for version in versions(name)
    ]
    union: Any = variants[0]
    for variant in variants[1:]:
        union = union | variant
    schema = TypeAdapter(union).json_schema()
    schema["$schema"] = _DIALECT
    schema["allOf"] = [{"anyOf": [{"required": ["event_id"]}, {"required": ["source_event_id"]}]}]
    schema["title"] = "OKR Ledger submission"
    schema["description"] = (
        "One event submitted to the ledger. Give event_id, or source_event_id to derive it."
    )
    return schema


def ledger_event_schema() -> Schema:
    schema = LedgerEvent.model_json_schema()
    schema["$schema"] = _DIALECT
    return schema


def all_schemas() -> dict[str, Schema]:
    """Relative path -> schema: everything the export directory holds."""
    files = {
        "submission.schema.json": submission_schema(),
        "ledger-event.schema.json": ledger_event_schema(),
    }
    for name in EVENT_TYPES:
        for version in versions(name):
            files[f"data/{name}.v{version}.schema.json"] = payload_schema(name, version)
    return files


def render(schema: Schema) -> bytes:
    return orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def write_all(directory: Path) -> list[Path]:
    written = []
    for relative, schema in all_schemas().items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(render(schema))
        written.append(path)
    return written
