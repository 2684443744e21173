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


class C2paCredentials(BaseModel):
    claim_generator: str | None = None
    digital_source_type: str | None = Field(
        None, description="IPTC term, e.g. trainedAlgorithmicMedia (made by a generative model)"
    )
    ai_generated: bool = False
    signature: str = Field(
        description="trusted, valid (signer on no trust list here), invalid, or unchecked"
    )
    signer: str | None = None
    failures: list[str] = []


class GeneratorTrace(BaseModel):
    field: str = Field(description="where: png:parameters, exif:Software, xmp:CreatorTool, ...")
    generator: str
    excerpt: str


class Provenance(BaseModel):
    """What the file itself claims about its origin; a separate signal from the score.
    summary "none" is no evidence either way: most shared images are stripped of metadata."""

    summary: str
    ai_claimed: bool
    c2pa: C2paCredentials | None = None
    traces: list[GeneratorTrace] = []
    error: str | None = None


class FaceResult(BaseModel):
    face: int = Field(description="its index, left to right")
    box: list[int] = Field(description="x1, y1, x2, y2 in pixels of the upright image")
    score: float
    label: Literal["fake", "real"]
    confidence: float = Field(description="the face detector's")


class FrameResult(BaseModel):
    frame: int = Field(description="the frame's number in the video, from 0")
    time: float = Field(description="seconds from the start")
    score: float
    label: Literal["fake", "real"]
    faces: list[FaceResult] | None = None
    whole_score: float | None = Field(
        None, description="faces=auto with faces cropped: the whole frame's own score"
    )


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
    provenance: Provenance | None = None
    faces: list[FaceResult] | None = Field(
        None, description="faces=on|auto: each face's box and score; the score is the highest "
        "(with auto, of the faces' and whole_score); none when auto looked for no face"
    )
    whole_score: float | None = Field(
        None, description="faces=auto with faces cropped: the whole image's own score, scored "
        "beside its faces (the score is the highest of all)"
    )
    frames: list[FrameResult] | None = Field(
        None, description="a video: each sampled frame's score; the score is their mean"
    )
    max_score: float | None = Field(None, description="a video: the highest frame score")
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
