"""The web view in a real headless Chromium (Debian's chromium + chromedriver, driven by selenium).

The service runs for real (uvicorn on 127.0.0.1, ``central_thread``); the browser logs in through the login
page, renders every page (screenshots under ``test-artifacts/web/``), and keeps a train page open while the
train travels its route through the API: the page must show each new state and event by itself, without a
reload (a marker set in the page's ``window`` survives).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_helpers import ALICE, BOB, OPS, admin, register_world, signed, station
from central_thread import Central, central_service
from conftest import require_component

pytestmark = pytest.mark.real_component("chromium")

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "web"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,900")
WAIT_S = 15.0


@pytest.fixture(scope="module")
def central() -> Iterator[Central]:
    require_component("chromium")
    with central_service() as c:
        with httpx.Client(base_url=c.url, timeout=30) as client:
            register_world(client)
        yield c


@pytest.fixture(scope="module")
def api(central: Central) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=central.url, timeout=30) as client:
        yield client


@pytest.fixture()
def browser() -> Iterator[object]:
    require_component("chromium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="pht-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def log_in(driver: object, central: Central, headers: dict[str, str], next_page: str) -> None:
    """Through the login page, as a person would: paste the token, press the button."""
    from selenium.webdriver.common.by import By

    driver.get(f"{central.url}{next_page}")  # type: ignore[attr-defined]
    assert "/ui/login?next=" in driver.current_url  # type: ignore[attr-defined]
    driver.find_element(By.ID, "token").send_keys(headers["Authorization"].split()[1])  # type: ignore[attr-defined]
    driver.find_element(By.ID, "login").click()  # type: ignore[attr-defined]
    wait_for(driver, lambda d: d.current_url.endswith(next_page) and d.find_elements(By.ID, "who")
             and d.execute_script("return document.readyState") == "complete")


def wait_for(driver: object, condition: object, timeout: float = WAIT_S) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)  # type: ignore[arg-type]


def text_of(driver: object, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.ID, element_id).text)  # type: ignore[attr-defined]


def screenshot(driver: object, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    assert driver.save_screenshot(str(path))  # type: ignore[attr-defined]
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 8_000, f"{path}: {len(data)} bytes"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width >= 800 and height >= 600, (width, height)
    return path


def severe_console_messages(driver: object) -> list[str]:
    """Errors the page logged (a refused script or style, a failed request, a script error)."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]  # type: ignore[attr-defined]


def submit(api: httpx.Client, definition: str = "count", who: dict[str, str] = ALICE) -> str:
    body = {"definition": definition, "parameters": {"MIN": "5"} if definition == "count" else {}}
    r = api.post("/api/trains", headers=who, json=signed(api, who, body))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def step(api: httpx.Client, eid: str, to: str, who: dict[str, str]) -> None:
    r = api.post(f"/api/executions/{eid}/steps", headers=who, json={"to": to, "used": []})
    assert r.status_code == 200, r.text


def test_pages_render_in_chromium(central: Central, api: httpx.Client, browser: object) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    tid = submit(api)
    submit(api, "fedavg")
    step(api, f"{tid}.r1-s0", "waiting-for-approval", station("aachen"))
    log_in(driver, central, ALICE, "/ui/trains")
    rows = driver.find_elements(By.CSS_SELECTOR, "#trains tbody tr")  # type: ignore[attr-defined]
    assert len(rows) >= 2 and "alice (researcher)" in text_of(driver, "who")
    assert driver.find_element(By.CSS_SELECTOR, "header").value_of_css_property("display") == "flex"  # type: ignore[attr-defined]
    screenshot(driver, "trains")
    driver.find_element(By.LINK_TEXT, tid).click()  # type: ignore[attr-defined]
    wait_for(driver, lambda d: text_of(d, "live") == "live")
    assert text_of(driver, "train-state") == "running" and text_of(driver, "current") == "aachen"
    screenshot(driver, "train")
    for page, element in (("/ui/stations", "stations"), ("/ui/datasets", "datasets")):
        driver.get(central.url + page)  # type: ignore[attr-defined]
        assert len(driver.find_elements(By.CSS_SELECTOR, f"#{element} tbody tr")) == 3  # type: ignore[attr-defined]
        screenshot(driver, element)
    driver.get(central.url + "/ui/trains/00000000-0000-4000-8000-000000000000")  # type: ignore[attr-defined]
    assert "there is no train" in text_of(driver, "problem")
    screenshot(driver, "not-found")
    expected = ("/ui/trains/00000000-0000-4000-8000-000000000000 - Failed to load resource: the server responded "
                "with a status of 404",)
    assert [m for m in severe_console_messages(driver) if not any(e in m for e in expected)] == []
    driver.find_element(By.CSS_SELECTOR, "form.who button").click()  # type: ignore[attr-defined]  # log out
    wait_for(driver, lambda d: "/ui/login" in d.current_url and d.find_elements(By.ID, "token"))
    log_in(driver, central, admin("aachen"), "/ui/station/aachen/pending")
    assert f"{tid}.r1-s0" in text_of(driver, "approvals") and text_of(driver, "approval-count") == "1"
    screenshot(driver, "pending")


def test_the_train_page_follows_a_running_train_without_reload(central: Central, api: httpx.Client,
                                                                browser: object) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    tid = submit(api)
    log_in(driver, central, OPS, f"/ui/trains/{tid}")
    wait_for(driver, lambda d: text_of(d, "live") == "live")
    assert text_of(driver, "train-state") == "queued" and text_of(driver, "progress-text") == "0/3"
    driver.execute_script("window.__notReloaded = true;")  # type: ignore[attr-defined]
    events_before = len(driver.find_elements(By.CSS_SELECTOR, "#events tbody tr"))  # type: ignore[attr-defined]

    step(api, f"{tid}.r1-s0", "waiting-for-approval", station("aachen"))
    wait_for(driver, lambda d: text_of(d, "train-state") == "running")
    slot = driver.find_element(By.CSS_SELECTOR, '#route td[data-slot="r1-s0"] .state')  # type: ignore[attr-defined]
    wait_for(driver, lambda d: slot.text == "waiting-for-approval")
    screenshot(driver, "train-live-waiting")

    for i, sid in enumerate(("aachen", "leipzig", "cologne")):
        eid = f"{tid}.r1-s{i}"
        steps = [("waiting-for-approval", station), ("approved", admin), ("pulling", station),
                 ("running", station)]
        for to, who in steps[1 if i == 0 else 0:]:
            step(api, eid, to, who(sid))
        r = api.post(f"/api/executions/{eid}/outputs", headers=station(sid), json={"sha256": "0" * 64, "byte_size": 3})
        assert r.status_code == 201, r.text
        step(api, eid, "output-under-review", station(sid))
        if i == 1:  # mid-way: leipzig's output waits for review
            wait_for(driver, lambda d: d.find_element(
                By.CSS_SELECTOR, '#route td[data-slot="r1-s1"] .state').text == "output-under-review")
            assert text_of(driver, "current") == "leipzig" and text_of(driver, "progress-text") == "1/3"
            screenshot(driver, "train-live-review")
        step(api, eid, "released", admin(sid))

    wait_for(driver, lambda d: text_of(d, "train-state") == "finished")
    wait_for(driver, lambda d: text_of(d, "live") == "ended (finished)")
    api_events = api.get(f"/api/trains/{tid}/events", headers=OPS, params={"limit": 500}).json()["total"]
    rows = driver.find_elements(By.CSS_SELECTOR, "#events tbody tr")  # type: ignore[attr-defined]
    assert len(rows) == api_events > events_before
    assert text_of(driver, "event-count") == str(api_events)
    assert text_of(driver, "progress-text") == "3/3" and text_of(driver, "current") == "—"
    cells = driver.find_elements(By.CSS_SELECTOR, "#route td[data-slot] .state")  # type: ignore[attr-defined]
    assert [c.text for c in cells] == ["released"] * 3
    last = driver.find_element(By.CSS_SELECTOR, f'#timelines li[data-timeline="{tid}.r1-s2"]')  # type: ignore[attr-defined]
    assert [s.text for s in last.find_elements(By.CSS_SELECTOR, ".state")] == [
        "queued", "waiting-for-approval", "approved", "pulling", "running", "output-under-review", "released"]
    assert driver.execute_script("return window.__notReloaded === true;")  # type: ignore[attr-defined]
    assert severe_console_messages(driver) == []
    screenshot(driver, "train-live-finished")


# -- the SPARQL page: YASGUI ------------------------------------------------------------------------------


def requested_urls(driver: object) -> list[str]:
    """Every http(s) / ws(s) URL the page asked for since the last call (Chromium's own chrome:// pages
    excepted), from the DevTools network log."""
    urls = []
    for entry in driver.get_log("performance"):  # type: ignore[attr-defined]
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            url = message["params"]["request"]["url"]
            if url.split(":", 1)[0] in ("http", "https", "ws", "wss"):
                urls.append(url)
    return urls


def open_yasgui(driver: object, central: Central, headers: dict[str, str], page: str = "/ui/sparql") -> None:
    log_in(driver, central, headers, page)
    wait_for(driver, lambda d: d.execute_script(
        "return !!(window.pht_yasgui && document.querySelector('#yasgui .yasqe .CodeMirror'))"))


def type_query(driver: object, text: str) -> None:
    """Into YASGUI's editor, key by key, as a person would (the editor closes no brackets by itself)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver.find_element(By.CSS_SELECTOR, "#yasgui .yasqe .CodeMirror").click()  # type: ignore[attr-defined]
    editor = driver.find_element(By.CSS_SELECTOR, "#yasgui .yasqe .CodeMirror textarea")  # type: ignore[attr-defined]
    editor.send_keys(Keys.CONTROL, "a")
    editor.send_keys(Keys.DELETE)
    editor.send_keys(text)


def run_query(driver: object, expect: str) -> str:
    """Press YASGUI's query button; the text of the result view once it shows ``expect`` (YASR draws
    asynchronously), or fails after the wait."""
    from selenium.webdriver.common.by import By

    driver.execute_script("window.__phtBefore = window.pht_yasgui.getTab().getYasr().results;")  # type: ignore[attr-defined]
    driver.find_element(By.CSS_SELECTOR, "#yasgui .yasqe_queryButton").click()  # type: ignore[attr-defined]
    wait_for(driver, lambda d: d.execute_script(
        "var r = window.pht_yasgui.getTab().getYasr().results; return !!r && r !== window.__phtBefore;"))
    wait_for(driver, lambda d: expect in d.find_element(By.CSS_SELECTOR, "#yasgui .yasr").text)
    return str(driver.find_element(By.CSS_SELECTOR, "#yasgui .yasr").text)  # type: ignore[attr-defined]


def test_the_sparql_page_is_yasgui_served_by_the_service(central: Central, api: httpx.Client,
                                                          browser: object) -> None:
    """Editor with syntax highlighting and our ontology's prefixes, result table; every request goes to the
    service itself, the page logs no error, and nothing the user did is kept in the browser's storage."""
    from selenium.webdriver.common.by import By

    driver = browser
    tid = submit(api)
    open_yasgui(driver, central, ALICE, "/ui/sparql?example=trains_by_state")
    assert "pht:Train" in driver.execute_script("return window.pht_yasgui.getTab().getQuery()")  # type: ignore[attr-defined]
    keywords = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#yasgui .yasqe .cm-keyword")]  # type: ignore[attr-defined]
    assert "SELECT" in keywords and "WHERE" in keywords  # highlighted by YASQE's SPARQL mode
    type_query(driver, "SELECT ?train ?state WHERE { ?train a pht:Train ; pht:state ?state ")
    wait_for(driver, lambda d: "PREFIX pht: <https://w3id.org/pht-kg/vocab#>" in d.execute_script(
        "return window.pht_yasgui.getTab().getQuery()"))  # added from /ui/sparql/prefixes.json on typing pht:
    driver.find_element(By.CSS_SELECTOR, "#yasgui .yasqe .CodeMirror textarea").send_keys("}")  # type: ignore[attr-defined]
    shown = run_query(driver, tid)
    assert tid in shown and "pht:Queued" in shown, shown  # the IRI shortened by the query's own prefix
    assert driver.find_elements(By.CSS_SELECTOR, "#yasgui .yasr table.dataTable tbody tr")  # type: ignore[attr-defined]
    screenshot(driver, "sparql-yasgui")
    type_query(driver, "SELECT ?x WHERE { ?x ?y }")
    shown = run_query(driver, "malformed SPARQL query: error at 1:")  # /sparql's one sentence, shown by YASR
    screenshot(driver, "sparql-yasgui-error")
    urls = requested_urls(driver)
    assert any(u.startswith(central.url + "/ui/sparql/query") for u in urls), urls
    assert [u for u in urls if not u.startswith(central.url + "/")] == []
    assert all("token" not in u.lower() and "eyJ" not in u for u in urls)  # the bearer token is in no URL
    stored = driver.execute_script("return JSON.stringify(Object.assign({}, window.localStorage))")  # type: ignore[attr-defined]
    assert "SELECT" not in stored and tid not in stored, stored
    expected = "/ui/sparql/query - Failed to load resource: the server responded with a status of 400"
    assert [m for m in severe_console_messages(driver) if expected not in m] == []


def test_a_researchers_yasgui_does_not_show_another_researchers_train(central: Central, api: httpx.Client,
                                                                      browser: object) -> None:
    driver = browser
    alices, bobs = submit(api), submit(api, who=BOB)
    open_yasgui(driver, central, ALICE)
    type_query(driver, "SELECT ?t WHERE { ?t a <https://w3id.org/pht-kg/vocab#Train> }")
    shown = run_query(driver, alices)
    assert bobs not in shown, shown
    assert severe_console_messages(driver) == []


@pytest.mark.parametrize("role", ["station", "station-admin", "operator"])
def test_yasgui_works_for_every_role_over_what_it_may_read(central: Central, api: httpx.Client, browser: object,
                                                           role: str) -> None:
    """A station sees its own graph (here: empty of trains), its admin the trains visiting it, an operator all."""
    driver = browser
    tid = submit(api)
    headers = {"station": station("aachen"), "station-admin": admin("aachen"), "operator": OPS}[role]
    open_yasgui(driver, central, headers, "/ui/sparql")
    type_query(driver, "SELECT (COUNT(?t) AS ?n) WHERE { ?t a <https://w3id.org/pht-kg/vocab#Train> }")
    run_query(driver, "1 result")
    type_query(driver, "SELECT ?t WHERE { ?t a <https://w3id.org/pht-kg/vocab#Train> }")
    shown = run_query(driver, "0 results" if role == "station" else tid)
    assert (tid in shown) == (role != "station"), shown
    assert severe_console_messages(driver) == []


# -- the SPARQL page's chart view (static/yasr-chart.js, Chart.js) -------------------------------------------

DRAWN_CHART = """
var canvas = document.querySelector('#yasgui .yasr .pht-chart canvas'), c = canvas && window.Chart.getChart(canvas);
if (!c) { return null; }
return {type: c.config.type, labels: c.data.labels, datasets: c.data.datasets.map(function (d, i) {
  return {label: d.label, data: d.data, drawn: c.getDatasetMeta(i).data.map(function (e) {
    return e.skip || isNaN(e.y) ? null : Math.round(c.scales.y.getValueForPixel(e.y) * 1000) / 1000; })}; })};
"""
"""The chart YASR shows, read back from its Chart.js instance: labels, each data set's values, and the value at
the top of each bar or point as drawn on the canvas (through the y scale), or null without a chart."""


def drawn_chart(driver: object) -> dict[str, object] | None:
    return driver.execute_script(DRAWN_CHART)  # type: ignore[attr-defined, no-any-return]


def show_chart(driver: object, name: str) -> None:
    driver.execute_script("document.querySelector('#yasgui .yasr .pht-chart').scrollIntoView()")  # type: ignore[attr-defined]
    screenshot(driver, name)


def chart_offered(driver: object) -> bool:
    from selenium.webdriver.common.by import By

    return bool(driver.find_element(By.CSS_SELECTOR, "#yasgui .yasr .select_chart").is_displayed())  # type: ignore[attr-defined]


def test_yasgui_charts_a_result_with_labels_and_numbers(central: Central, api: httpx.Client, browser: object) -> None:
    """The page's example trains_by_state as bars (state → count, the same numbers /sparql answers), as lines on
    request, a VALUES result with IRIs and two numeric columns as two data sets; no chart for an ASK or a list of
    IRIs (the Chart button is hidden)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver = browser
    tid = submit(api)
    submit(api, "fedavg")
    step(api, f"{tid}.r1-s0", "waiting-for-approval", station("aachen"))  # a running train, a queued one
    open_yasgui(driver, central, ALICE, "/ui/sparql?example=trains_by_state")
    query = driver.execute_script("return window.pht_yasgui.getTab().getQuery()")  # type: ignore[attr-defined]
    rows = api.post("/sparql", headers={**ALICE, "Accept": "application/sparql-results+json"},
                    data={"query": query}).json()["results"]["bindings"]
    assert len(rows) >= 2
    run_query(driver, "trains")
    yasr = "#yasgui .yasr"
    assert "selected" in driver.find_element(By.CSS_SELECTOR, f"{yasr} .select_table").get_attribute("class")  # type: ignore[attr-defined]
    assert chart_offered(driver) and drawn_chart(driver) is None  # the table stays the default view
    driver.find_element(By.CSS_SELECTOR, f"{yasr} .select_chart").click()  # type: ignore[attr-defined]
    wait_for(driver, lambda d: drawn_chart(d) is not None)
    chart = drawn_chart(driver)
    counts = [float(r["trains"]["value"]) for r in rows]
    names = [r["stateLabel"]["value"] if all("stateLabel" in r for r in rows)
             else r["state"]["value"].replace("https://w3id.org/pht-kg/vocab#", "pht:") for r in rows]
    assert chart == {"type": "bar", "labels": names,
                     "datasets": [{"label": "trains", "data": counts, "drawn": counts}]}, chart
    show_chart(driver, "sparql-chart-bars")
    Select(driver.find_element(By.CSS_SELECTOR, f"{yasr} select.pht-chart-kind")).select_by_value("line")  # type: ignore[attr-defined]
    wait_for(driver, lambda d: (drawn_chart(d) or {}).get("type") == "line")
    assert drawn_chart(driver) == {**chart, "type": "line"}

    type_query(driver, "PREFIX ex: <http://example.org/city/> SELECT ?city ?trains ?stations WHERE { VALUES "
                       "(?city ?trains ?stations) { (ex:Aachen 3 1) (ex:Leipzig 5 2) (<http://example.net/Koeln> 2.5 "
                       "UNDEF) } }")
    run_query(driver, "3 results")
    cities = ["ex:Aachen", "ex:Leipzig", "http://example.net/Koeln"]  # IRIs shortened by the query's prefixes
    wait_for(driver, lambda d: (drawn_chart(d) or {}).get("labels") == cities)
    assert drawn_chart(driver) == {"type": "line", "labels": cities, "datasets": [
        {"label": "trains", "data": [3, 5, 2.5], "drawn": [3, 5, 2.5]},
        {"label": "stations", "data": [1, 2, None], "drawn": [1, 2, None]}]}
    show_chart(driver, "sparql-chart-lines")

    for text, shown in (("ASK { ?s ?p ?o }", "True"),
                        ("SELECT ?t WHERE { ?t a <https://w3id.org/pht-kg/vocab#Train> }", tid)):
        type_query(driver, text)
        run_query(driver, shown)
        assert not chart_offered(driver) and drawn_chart(driver) is None, text
    assert [u for u in requested_urls(driver) if not u.startswith(central.url + "/")] == []
    assert severe_console_messages(driver) == []
