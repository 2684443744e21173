"""The service's answers as pydantic models: they are the OpenAPI schema, the contract that
clients (and the property-based test) hold the service to."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    """Every refused request, whatever the status."""

    detail: str = Field(description="one line saying what was wrong")
    status: int
    request_id: str


class ModelRef(BaseModel):
    name: str
    version: str
    weights_sha256: str


class ImageInfo(BaseModel):
    width: int
    height: int
    format: str = Field(description="the format read from the bytes, never from the name")
    bytes: int


class ItemError(BaseModel):
    status: int = Field(description="what the status would be had this been the only file")
    detail: str


class Result(BaseModel):
    filename: str
    score: float | None = Field(None, description="calibrated P(fake), 0-1")
    label: Literal["fake", "real"] | None = None
    threshold: float
    model: ModelRef
    image: ImageInfo | None = None
    warnings: list[str] = []
    heatmap_png: str | None = Field(
        None, description="base64 PNG: the Grad-CAM heat-map over the image (explain=true)"
    )
    error: ItemError | None = None


class PredictResponse(BaseModel):
    request_id: str
    results: list[Result]


class ModelCard(BaseModel):
    name: str
    version: str
    weights_sha256: str
    backbone: str
    head: str
    image_size: int
    interpolation: str
    mean: list[float]
    std: list[float]
    threshold: float
    temperature: float
    class_names: list[str]
    engine: str
    precision: str
    package_version: str
    training_data: list[str] = []
    licence: str | None = None
    validation_metrics: dict[str, Any] = {}
    heldout_metrics: dict[str, Any] | None = None


class Status(BaseModel):
    status: Literal["ok", "ready", "loading", "failed"]
    detail: str | None = None
