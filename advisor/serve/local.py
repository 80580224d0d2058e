"""A served plan without Ray: one replica (`advisor.serve.replica.Generator`) in this process,
behind the same HTTP front (`advisor.serve.ingress.Front`) on aiohttp. For a machine where Ray
cannot run (`advisor serve --engine local`); the API, batching and timings are the same, and
the replica is not replaced if it fails.
"""
from __future__ import annotations

import asyncio

from advisor.serve.ingress import Front
from advisor.serve.spec import ServeSpec


def serve_forever(spec: ServeSpec, host: str, port: int, ready=print) -> None:
    from aiohttp import web

    from advisor.serve.replica import Generator

    generator = Generator(spec.with_changes(replicas=1))
    front = Front(generator.spec, generator.generate)

    async def handle(request: web.Request) -> web.Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        status, out_headers, body = await front.handle(request.method, request.path, headers,
                                                       await request.read())
        return web.Response(body=body, status=status, headers=out_headers)

    async def main() -> None:
        app = web.Application(client_max_size=1024**2)
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        ready(f"POST http://{host}:{port}/generate   GET http://{host}:{port}/healthz   "
              "(Ctrl-C stops)")
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    asyncio.run(main())
