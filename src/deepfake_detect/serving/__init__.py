"""The HTTP service and its web page (`deepfake-detect serve`): FastAPI on the `Detector`.

Needs the `serve` extra (fastapi, uvicorn, python-multipart); `create_app` builds the app.
"""
