"""Validation with Great Expectations, bottom up: `suites` (suite files to expectation
specs), `context` (the GX context, checkpoints, Data Docs), `checks` (a frame against a
suite). The step that validates a dataset is precast.steps.validate."""

from precast.validation.checks import (
    ValidationFailed,
    ValidationResult,
    failure_message,
    gx_suite_name,
    validate_frame,
)
from precast.validation.context import (
    INDEX_LIMIT,
    NO_DOCS,
    RESULT_FORMAT,
    SITE,
    docs_index,
    gx_root,
)
from precast.validation.suites import (
    ExpectationSpec,
    SuiteError,
    call_text,
    resolve_config_refs,
    suite_specs,
    summarize,
    to_expectation,
)

__all__ = [
    "ExpectationSpec",
    "SuiteError",
    "call_text",
    "resolve_config_refs",
    "suite_specs",
    "summarize",
    "to_expectation",
    "INDEX_LIMIT",
    "NO_DOCS",
    "RESULT_FORMAT",
    "SITE",
    "docs_index",
    "gx_root",
    "ValidationFailed",
    "ValidationResult",
    "failure_message",
    "gx_suite_name",
    "validate_frame",
]
