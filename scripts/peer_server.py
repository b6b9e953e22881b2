"""The users' stack as a peer for scripts/bench-http-compare.sh: FastAPI + sentence-transformers.

An OpenAI-shaped POST /v1/embeddings (what `nlpd bench --scenario openai-embed` sends) served the
way the users' Context Service guide builds it: the model loaded once at start, torch limited to
--threads, and a dynamic batcher that takes every request already queued, waits up to
--max-wait-ms for more (default 0, as nlpd's default), up to --max-batch inputs, and encodes them
in one call on a worker thread, so the event loop keeps accepting.
GET /health answers once the model is loaded. Nothing is fetched: the model is a local directory.

  .venv-ref/bin/python scripts/peer_server.py --model models/all-MiniLM-L6-v2 --port 8090
"""

import argparse
import asyncio
import contextlib
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import uvicorn  # noqa: E402
from fastapi import FastAPI, HTTPException  # noqa: E402
from pydantic import BaseModel  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402


class EmbeddingsRequest(BaseModel):
    input: str | list[str]
    model: str | None = None


def build(args: argparse.Namespace) -> FastAPI:
    torch.set_num_threads(args.threads)
    model = SentenceTransformer(args.model, device="cpu")
    queue: asyncio.Queue = asyncio.Queue()

    async def batcher() -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await queue.get()]
            size = len(jobs[0][0])
            deadline = loop.time() + args.max_wait_ms / 1000
            while size < args.max_batch:
                # What is already waiting joins at once; then wait for more until the deadline.
                if queue.empty():
                    left = deadline - loop.time()
                    if left <= 0:
                        break
                    try:
                        job = await asyncio.wait_for(queue.get(), left)
                    except asyncio.TimeoutError:
                        break
                else:
                    job = queue.get_nowait()
                jobs.append(job)
                size += len(job[0])
            texts = [t for texts, _ in jobs for t in texts]
            try:
                vecs = await asyncio.to_thread(
                    model.encode, texts, batch_size=args.max_batch, normalize_embeddings=True
                )
            except Exception as e:  # noqa: BLE001: hand the error to every waiting request
                for _, fut in jobs:
                    fut.set_exception(e)
                continue
            at = 0
            for texts, fut in jobs:
                fut.set_result(vecs[at : at + len(texts)].tolist())
                at += len(texts)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        model.encode(["warm up"])
        task = asyncio.get_running_loop().create_task(batcher())
        yield
        task.cancel()

    app = FastAPI(lifespan=lifespan)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.post("/v1/embeddings")
    async def embeddings(req: EmbeddingsRequest) -> dict:
        texts = [req.input] if isinstance(req.input, str) else req.input
        if not texts:
            raise HTTPException(422, "input is empty")
        fut = asyncio.get_running_loop().create_future()
        await queue.put((texts, fut))
        vecs = await fut
        return {
            "object": "list",
            "model": req.model or os.path.basename(args.model),
            "data": [
                {"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vecs)
            ],
            "usage": {"prompt_tokens": 0, "total_tokens": 0},
        }

    return app


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--port", type=int, default=8090)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--max-batch", type=int, default=32)
    # nlpd's default is no waiting either (max_wait_us 0): each batch takes what has queued.
    p.add_argument("--max-wait-ms", type=float, default=0.0)
    args = p.parse_args()
    uvicorn.run(build(args), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
