"""The baseline: a bare Starlette app on uvicorn that calls the same model in-process,
speaking just enough of the v2 protocol. `python bench/bare_app.py MODEL.skops PORT`."""

from __future__ import annotations

import sys

import numpy as np
import orjson
import skops.io as sio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

model = sio.load(sys.argv[1], trusted=sio.get_untrusted_types(file=sys.argv[1]) or None)


async def infer(request: Request) -> Response:
    body = orjson.loads(await request.body())
    tensor = body["inputs"][0]
    x = np.asarray(tensor["data"], dtype=np.float64).reshape(tensor["shape"])
    proba = model.predict_proba(x)
    labels = model.classes_[np.argmax(proba, axis=1)]
    out = {
        "model_name": "bare",
        "outputs": [
            {"name": "label", "datatype": "INT64", "shape": [len(labels)], "data": labels.tolist()},
            {"name": "probabilities", "datatype": "FP64", "shape": list(proba.shape), "data": proba.reshape(-1).tolist()},
        ],
    }
    return Response(orjson.dumps(out), media_type="application/json")


async def ready(request: Request) -> Response:
    return Response(b'{"ready": true}', media_type="application/json")


app = Starlette(routes=[Route("/v2/models/bare/infer", infer, methods=["POST"]),
                        Route("/v2/health/ready", ready)])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False)
