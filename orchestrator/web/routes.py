"""The built-in web view at ``/ui``: server-rendered pages over the same graph, tokens and roles as the API.

Pages: trains (state, progress), one train (route, timelines, events, live by server-sent events), stations,
datasets, a SPARQL query form, and a station's pending approvals and output reviews. Every refusal is an HTML
page with a 4xx status (never a 500): unknown train 404, someone else's 403, malformed id 400, a query the
parser refuses 400 with the parser's message. Not in the OpenAPI schema: the API is ``/api``.
"""

# No ``from __future__ import annotations``: FastAPI reads the handlers' annotations at run time, and ``Who``
# is a local of ``web_router``.

from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, StreamingResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pyoxigraph import BlankNode, Literal, NamedNode, Triple
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import ImmutableMultiDict

from graph_store import CENTRAL_GRAPH, PHT_NS, PREFIXES, GraphStoreError, list_named_queries

from ..api.deps import Services
from ..auth import AuthError, TokenVerifier
from ..errors import InvalidValue, LifecycleError
from ..page_tokens import FIRST, decode, encode
from ..principal import Principal, Role
from ..reads import PAGE_MAX
from ..query_runner import QueryAnswer, query_runner
from ..sparql_http import HttpError, error_for, media_type
from .session import (
    LoginRequired,
    PageError,
    clear_login,
    keep_login,
    safe_next,
    same_origin,
    web_principal,
)
from .crate_download import crate_zip
from .stream import train_stream
from .views import check_id, pending_work, train_facts, train_page, train_rows

__all__ = ["web_router"]

HERE = Path(__file__).resolve().parent
STATIC = {"style.css": ("style.css", "text/css; charset=utf-8"),
          "train.js": ("train.js", "text/javascript; charset=utf-8"),
          "sparql.js": ("sparql.js", "text/javascript; charset=utf-8"),
          "yasgui.min.js": ("yasgui/yasgui.min.js", "text/javascript; charset=utf-8"),
          "yasgui.min.css": ("yasgui/yasgui.min.css", "text/css; charset=utf-8"),
          "yasgui-LICENSE.txt": ("yasgui/LICENSE", "text/plain; charset=utf-8"),
          "yasr-chart.js": ("yasr-chart.js", "text/javascript; charset=utf-8"),
          "chart.umd.min.js": ("chartjs/chart.umd.min.js", "text/javascript; charset=utf-8"),
          "chartjs-LICENSE.txt": ("chartjs/LICENSE.md", "text/plain; charset=utf-8")}
"""The files of ``static/`` the view serves, by name: path and media type (a fixed list: no path from a request
reaches the file system). ``yasgui/`` is npm's @zazuko/yasgui and ``chartjs/`` npm's chart.js, vendored by
``scripts/vendor-yasgui.sh``; ``yasr-chart.js`` is our chart view for YASGUI's result pane."""
YASGUI_ENDPOINT = "/ui/sparql/query"
"""Where the SPARQL page's YASGUI sends queries: the login cookie is scoped to ``/ui``, so the page's script
never holds the token, and the API's ``/sparql`` (bearer tokens only) never accepts a cookie."""
PREFIXES_SHOWN = {**PREFIXES, "rdfs": "http://www.w3.org/2000/01/rdf-schema#", "owl": "http://www.w3.org/2002/07/owl#",
                  "sh": "http://www.w3.org/ns/shacl#", "sec": "https://w3id.org/security#",
                  "org": "http://www.w3.org/ns/org#", "skos": "http://www.w3.org/2004/02/skos/core#",
                  "foaf": "http://xmlns.com/foaf/0.1/"}
"""The prefixes YASGUI completes (``PREFIX pht: <...>``): those of ``ontology/pht.ttl`` and ``shapes/``."""

SECURITY_HEADERS = {
    # Our own scripts and styles only (no inline script, no CDN); no framing; forms post here only.
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
YASGUI_STYLES = ("'sha256-zCK2EVMoPc04mRF/g5CotUvxbJPWS+8V0b+s9ptqQIk='",
                 "'sha256-c0O6TmFAkgpNbHxKAa1BrveWHHopjEtC47i0PzMudxg='")
"""The two fixed ``<style>`` elements YASR's column resizer adds (its grips; the cursor while dragging), by
hash: any other inline style sheet stays refused (``tests/test_web_browser.py`` checks the page logs none)."""
SPARQL_PAGE_CSP = (SECURITY_HEADERS["Content-Security-Policy"]
                   + f"; style-src-elem 'self' {' '.join(YASGUI_STYLES)}")
"""The SPARQL page's policy: the view's own, plus YASR's two style sheets by hash; scripts stay our own files."""
SPARQL_SHOWN = 1000
"""Rows of a query's result shown in the table (the endpoint ``/sparql`` gives all, up to its limit)."""

SAMPLE_QUERY = f"""PREFIX pht: <{PHT_NS}>
SELECT ?state (COUNT(?train) AS ?trains) WHERE {{
  GRAPH <{CENTRAL_GRAPH.value}> {{ ?train a pht:Train ; pht:state ?state }}
}}
GROUP BY ?state ORDER BY DESC(?trains)"""


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.globals["STATION_ROLES"] = (Role.STATION, Role.STATION_ADMIN)
    return env


class _Pages:
    """Renders templates into responses carrying the security headers."""

    def __init__(self) -> None:
        self.env = _environment()

    def render(self, name: str, status: int = 200, *, principal: Principal | None = None,
               headers: dict[str, str] | None = None, **context: Any) -> HTMLResponse:
        body = self.env.get_template(name).render(principal=principal, Role=Role, **context)
        return HTMLResponse(body, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})})

    def error(self, status: int, title: str, message: str, *, principal: Principal | None = None,
              headers: dict[str, str] | None = None) -> HTMLResponse:
        return self.render("error.html", status, principal=principal, headers=headers, title=title, message=message)


def _html_route(pages: _Pages) -> type[APIRoute]:
    """A route class turning every refusal (also from dependencies and parameter checks) into an HTML page."""

    class HtmlRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def html_errors(request: Request) -> Response:
                try:
                    return await handler(request)
                except LoginRequired as e:
                    return _login_needed(pages, request, e)
                except Exception as e:  # refusals become pages; _refusal raises anything else again (a bug)
                    status, title, message = _refusal(e)
                    return pages.error(status, title, message, principal=getattr(request.state, "principal", None))

            return html_errors

    return HtmlRoute


def _refusal(e: Exception) -> tuple[int, str, str]:
    """Status, title and sentence of a refusal; anything else is a bug and is raised again."""
    if isinstance(e, PageError):
        return e.status, e.title, e.message
    if isinstance(e, LifecycleError):
        titles = {404: "Not found", 403: "Not allowed", 409: "Conflict", 422: "Not valid"}
        return e.status, titles.get(e.status, "Refused"), str(e)
    if isinstance(e, RequestValidationError):
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())) or "the request"
        return 400, "Bad request", f"{where}: {first.get('msg', 'not valid')}"
    if isinstance(e, HttpError):
        return e.status, "Refused", e.detail
    if isinstance(e, GraphStoreError):
        refusal = error_for(e)
        return refusal.status, "Refused", refusal.detail
    if isinstance(e, HTTPException):
        return e.status_code, "Refused", str(e.detail)
    raise e


def _login_needed(pages: _Pages, request: Request, e: LoginRequired) -> Response:
    if e.from_header or "text/event-stream" in request.headers.get("accept", "") or \
            request.url.path == YASGUI_ENDPOINT:
        # a script (or the live stream): no redirect to a form it cannot fill in
        return pages.error(401, "Not logged in", e.reason or "this page needs a bearer token",
                           headers={"WWW-Authenticate": "Bearer"})
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    response = RedirectResponse(f"/ui/login?next={_quote(target)}{'&expired=1' if e.reason else ''}",
                                status_code=303, headers={"Cache-Control": "no-store"})
    if e.reason:
        clear_login(response)
    return response


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="/")


def _need(principal: Principal, *roles: Role) -> None:
    if not principal.has(*roles):
        needed = ", ".join(r.value for r in roles)
        raise PageError(403, "Not allowed", f"this page needs one of the roles: {needed}")


def web_router(s: Services, *, verifier: TokenVerifier | None = None, poll_s: float = 0.5,
               stream_lifetime_s: float = 30.0, query_workers: int = 2) -> APIRouter:
    """The ``/ui`` pages over ``s``; tokens are verified like the API's (``verifier``, else one built from
    the same settings). ``poll_s`` and ``stream_lifetime_s`` pace a train page's live stream: uvicorn waits
    for open streams when it stops, so a stream lives at most 30 s by default and the browser reconnects."""
    pages = _Pages()
    verify = verifier or TokenVerifier(s.settings)
    runner = query_runner(s.store, s.settings, s.readable, workers=query_workers)
    examples = {q.name: q for q in list_named_queries() if not q.parameters and not q.is_update}

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        await runner.start(wait=False)  # the page's queries wait for them; /sparql's pool is waited for
        yield
        runner.close()

    router = APIRouter(prefix="/ui", route_class=_html_route(pages), include_in_schema=False, lifespan=lifespan)
    Who = Annotated[Principal, Depends(web_principal(verify))]

    @router.get("")
    @router.get("/")
    async def home(who: Who) -> Response:
        """Researchers and operators start at the trains, stations at their pending decisions."""
        if who.has(Role.RESEARCHER, Role.OPERATOR) or who.station is None:
            return RedirectResponse("/ui/trains", status_code=303)
        return RedirectResponse(f"/ui/station/{_quote(who.station)}/pending", status_code=303)

    # -- logging in and out ----------------------------------------------------------------------------

    @router.get("/login")
    async def login_form(next: str | None = None, expired: str | None = None) -> Response:
        return pages.render("login.html", next=safe_next(next), expired=bool(expired), reason=None)

    @router.post("/login")
    async def login(request: Request) -> Response:
        if not same_origin(request):
            raise PageError(403, "Refused", "the login form must be sent from this site")
        form = await request.form()
        token, target = str(form.get("token") or "").strip(), safe_next(str(form.get("next") or ""))
        try:
            who = (await run_in_threadpool(verify.verify, token)) if verify.fetches_keys else verify.verify(token)
        except AuthError as e:
            return pages.render("login.html", 401, next=target, expired=False, reason=str(e))
        response = RedirectResponse(target, status_code=303)
        keep_login(response, token, secure=request.url.scheme == "https")
        response.headers["X-PHT-Subject"] = who.subject
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        if not same_origin(request):
            raise PageError(403, "Refused", "the logout form must be sent from this site")
        response = RedirectResponse("/ui/login", status_code=303)
        clear_login(response)
        return response

    @router.get("/static/{name}")
    async def static(name: str) -> Response:
        if name not in STATIC:
            raise PageError(404, "Not found", f"there is no file {name[:80]!r} here")
        path, media = STATIC[name]
        return Response((HERE / "static" / path).read_bytes(), media_type=media,
                        headers={"Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"})

    # -- trains ----------------------------------------------------------------------------------------

    @router.get("/trains")
    async def trains(who: Who, state: str | None = None, limit: int = PAGE_MAX, after: str = "") -> Response:
        """Trains with state and progress, newest first: a researcher's own, an operator's all; keyset pages
        (``after``: the page token of the "older" link)."""
        _need(who, Role.RESEARCHER, Role.OPERATOR)
        chart = s.lifecycle.chart
        if state == "":
            state = None
        if state is not None and state not in chart.state_by_token:
            raise PageError(400, "Unknown state", f"{state[:40]!r} is not a state; known: "
                                                  f"{', '.join(sorted(chart.state_by_token))}")
        if not 1 <= limit <= PAGE_MAX:
            raise PageError(400, "Bad page", f"limit must be 1 to {PAGE_MAX}")
        try:
            key = decode(after) if after else FIRST
        except InvalidValue as e:
            raise PageError(400, "Bad page", str(e)) from None
        rows, total, following = await run_in_threadpool(train_rows, s, who, state, key, limit)
        return pages.render("trains.html", principal=who, rows=rows, total=total, limit=limit, first=not after,
                            next=None if following is None else encode(following), state=state or "",
                            states=sorted(chart.state_by_token))

    @router.get("/trains/{train_id}")
    async def train(who: Who, train_id: str) -> Response:
        """A train: route, timeline per execution, events; the script keeps it live."""
        check_id(train_id, "train")
        page = await run_in_threadpool(train_page, s, who, train_id)
        return pages.render("train.html", principal=who, train=page)

    @router.get("/trains/{train_id}/ro-crate.zip")
    async def train_crate(who: Who, train_id: str) -> Response:
        """The finished train's RO-Crate (Five Safes RO-Crate 0.5, Provenance Run Crate 0.5) as a ZIP."""
        check_id(train_id, "train")
        body = await run_in_threadpool(crate_zip, s, who, train_id)
        return Response(body, media_type="application/zip", headers={
            "Content-Disposition": f'attachment; filename="train-{train_id}-ro-crate.zip"'})

    @router.get("/trains/{train_id}/events/stream")
    async def train_live(who: Who, train_id: str, request: Request) -> Response:
        """Server-sent events: the train's new events and state until it ends (see ``stream.py``)."""
        check_id(train_id, "train")
        facts = await run_in_threadpool(train_facts, s, who, train_id)
        body = train_stream(request, s, facts, poll_s=poll_s, lifetime_s=stream_lifetime_s)
        return StreamingResponse(body, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    # -- registry --------------------------------------------------------------------------------------

    @router.get("/stations")
    async def stations(who: Who) -> Response:
        rows = await run_in_threadpool(lambda: [
            {"id": r.id, "title": r.title or "", "owner": r.owner or "", "runtimes": ", ".join(r.runtimes)}
            for r in s.reads.stations()])
        return pages.render("stations.html", principal=who, rows=rows)

    @router.get("/datasets")
    async def datasets(who: Who) -> Response:
        rows = await run_in_threadpool(lambda: [
            {"id": r.id, "title": r.title or "", "station": r.station} for r in s.reads.datasets()])
        return pages.render("datasets.html", principal=who, rows=rows)

    # -- a station's decisions -------------------------------------------------------------------------

    @router.get("/station/{station_id}/pending")
    async def pending(who: Who, station_id: str, request: Request) -> Response:
        """Executions waiting for the station admin (approval) and outputs under review, with the CLI
        commands that decide them (release needs the held output, which only the station host has)."""
        check_id(station_id, "station")
        _need(who, Role.STATION, Role.STATION_ADMIN, Role.OPERATOR)
        items = await run_in_threadpool(pending_work, s, who, station_id)
        return pages.render("pending.html", principal=who, station=station_id, items=items,
                            central=str(request.base_url).rstrip("/"))

    # -- SPARQL ----------------------------------------------------------------------------------------

    async def sparql_page(who: Principal, query: str | None, example: str | None) -> Response:
        if example is not None and example not in examples:
            raise PageError(404, "Not found", f"there is no parameterless named query {example[:60]!r}")
        shown = query if query is not None else (examples[example].text if example else SAMPLE_QUERY)
        context: dict[str, Any] = {"query": shown, "examples": sorted(examples), "answer": None, "problem": None}
        status = 200
        if query is not None and query.strip():
            try:  # exactly what /sparql does with a query: in a worker process, within the deadline
                context["answer"] = _table(await runner.answer(who, query), s.lifecycle.iris.base)
            except HttpError as e:
                status, context["problem"] = e.status, e.detail
            except GraphStoreError as e:
                refusal = error_for(e)
                status, context["problem"] = refusal.status, refusal.detail
        return pages.render("sparql.html", status, principal=who, endpoint=YASGUI_ENDPOINT,
                            headers={"Content-Security-Policy": SPARQL_PAGE_CSP}, **context)

    @router.get("/sparql/prefixes.json")
    async def sparql_prefixes(_who: Who) -> Response:
        """The prefixes YASGUI's editor completes, as prefix.cc's JSON (its ``prefixCcApi``)."""
        return JSONResponse(PREFIXES_SHOWN, headers={"Cache-Control": "max-age=300"})

    @router.get("/sparql/query")
    @router.post("/sparql/query")
    async def sparql_endpoint(who: Who, request: Request) -> Response:
        """The SPARQL Protocol for the page's YASGUI, read-only: ``/sparql``'s answers (formats, time-out, row
        limit, the caller's graphs), authenticated by the login cookie; refusals are JSON like ``/sparql``'s."""
        try:
            form: ImmutableMultiDict[str, Any] = request.query_params
            if request.method == "POST":
                if not same_origin(request):
                    raise HttpError(403, "queries with the login cookie must come from this site's pages")
                if media_type(request) != "application/x-www-form-urlencoded":
                    raise HttpError(415, "POST the query as application/x-www-form-urlencoded (query=...)")
                form = await request.form()
            if "update" in form:
                raise HttpError(403, "the web view is read-only: send updates to /sparql with an operator's token")
            queries = form.getlist("query")
            if len(queries) != 1 or not isinstance(queries[0], str):
                raise HttpError(400, "give exactly one query parameter")
            # exactly what /sparql does with a query, in the page's own worker processes
            return await runner.respond(who, queries[0], [], [], request.headers.get("accept"))
        except HttpError as e:
            return e.response()
        except GraphStoreError as e:
            return error_for(e).response()

    @router.get("/sparql")
    async def sparql_get(who: Who, query: str | None = None, example: str | None = None) -> Response:
        """The query form; ``?query=`` runs a query, ``?example=NAME`` fills in a named query."""
        return await sparql_page(who, query, example)

    @router.post("/sparql")
    async def sparql_post(who: Who, request: Request) -> Response:
        """Run the form's query (read-only: updates go to ``/sparql`` with an operator's token)."""
        form = await request.form()
        return await sparql_page(who, str(form.get("query") or ""), None)

    @router.get("/{rest:path}")
    async def not_found(rest: str) -> Response:
        raise PageError(404, "Not found", "there is no such page; see the links above")

    return router


def _term(term: Any, base: str) -> dict[str, str]:
    """A result term for the table: its text, its kind, and a link to the train page for a train."""
    if isinstance(term, NamedNode):
        prefix = f"{base}trains/"
        link = f"/ui/trains/{term.value[len(prefix):]}" if term.value.startswith(prefix) and \
            "/" not in term.value[len(prefix):] else ""
        return {"text": term.value, "kind": "iri", "link": link}
    if isinstance(term, BlankNode):
        return {"text": f"_:{term.value}", "kind": "bnode", "link": ""}
    if isinstance(term, Literal):
        suffix = f"@{term.language}" if term.language else ""
        return {"text": term.value + suffix, "kind": "literal", "link": ""}
    if isinstance(term, Triple):
        return {"text": str(term), "kind": "triple", "link": ""}
    return {"text": "", "kind": "unbound", "link": ""}


def _table(answer: QueryAnswer, base: str) -> dict[str, Any]:
    """An evaluated query as a table: ASK as one cell, graphs as subject / predicate / object."""
    if answer.boolean is not None:
        return {"columns": ["answer"], "rows": [[{"text": str(bool(answer.boolean)).lower(), "kind": "literal",
                                                   "link": ""}]], "total": 1, "truncated": False, "shown": 1}
    if answer.is_graph:
        columns = ["subject", "predicate", "object"]
        rows = [[_term(t.subject, base), _term(t.predicate, base), _term(t.object, base)]
                for t in answer.triples[:SPARQL_SHOWN]]
        total = len(answer.triples)
    else:
        columns = list(answer.variables)
        rows = [[_term(row[i], base) for i in range(len(columns))] for row in answer.rows[:SPARQL_SHOWN]]
        total = len(answer.rows)
    return {"columns": columns, "rows": rows, "total": total, "truncated": answer.truncated,
            "shown": min(total, SPARQL_SHOWN)}
