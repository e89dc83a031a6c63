"""The web console in a real browser (headless Chromium): every page loads without a console error
(a CSP violation is one), the playground decides as you type and through a shared link, errors
land next to their field, the map redraws while its slider is dragged, a HITL question is answered,
a revision is rolled back, data is shown as text (no markup from rules or payloads runs), and a
server with a token asks for it once.

The tests share one server and one browser and run in file order (later ones build on the
revisions the earlier ones made)."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest
from conftest import TOKEN, Server, assert_no_console_errors, screenshot
from selenium.webdriver import ActionChains
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

WAIT = 10
XSS_REASONING = "<b>x</b><script>window.__pwned=1</script>"
XSS_PAYLOAD = "<img src=x onerror=window.__pwned_img=1>"
# Chromium logs the network line of every 4xx a page's fetch gets as SEVERE; these are provoked.
NET_422 = r"status of 422"
NET_401 = r"status of 401"


def tid(driver: WebDriver, testid: str) -> WebElement:
    return driver.find_element(By.CSS_SELECTOR, f'[data-testid="{testid}"]')


def wait(driver: WebDriver, cond, timeout: float = WAIT, message: str = ""):  # noqa: ANN001
    # Polled pages re-render: an element found a moment ago may be gone; look again.
    ignored = (NoSuchElementException, StaleElementReferenceException)
    return WebDriverWait(driver, timeout, poll_frequency=0.05, ignored_exceptions=ignored).until(lambda d: cond(d), message)


def wait_text(driver: WebDriver, testid: str, pattern: str = r"\S", timeout: float = WAIT) -> str:
    def check(d: WebDriver) -> str | bool:
        els = d.find_elements(By.CSS_SELECTOR, f'[data-testid="{testid}"]')
        t = els[0].text if els and els[0].is_displayed() else ""
        return t if re.search(pattern, t) else False

    return wait(driver, check, timeout, f"{testid} never matched {pattern!r}")


def open_page(driver: WebDriver, server: Server, hash_: str) -> None:
    driver.get(f"{server.url}/{hash_}")
    wait(driver, lambda d: d.execute_script("return document.body.dataset.ready === '1'"), message="console did not start")


def type_into(el: WebElement, text: str) -> None:
    el.send_keys(Keys.CONTROL, "a")
    el.send_keys(Keys.DELETE)
    if text:
        el.send_keys(text)


def map_generation(driver: WebDriver) -> int:
    return int(tid(driver, "map-chart").get_attribute("data-generation") or 0)


# ------------------------------------------------------------------------------------------------


def tooltip_text(driver: WebDriver, chart_testid: str) -> str:
    """The visible text of the ECharts tooltip inside a chart (class `sf-tooltip`)."""
    return driver.execute_script(
        "const t = document.querySelector(`[data-testid='${arguments[0]}'] .sf-tooltip`);"
        "return t && getComputedStyle(t).display !== 'none' && getComputedStyle(t).opacity !== '0' ? t.textContent : '';",
        chart_testid,
    )


def seed_loop_data(server: Server) -> None:
    """A few logged decisions and one outcome, so the Loop page has charts to draw."""
    for inputs in ({"trainset_size": 200, "budget_usd": 10}, {"trainset_size": 30, "budget_usd": 3}, {"trainset_size": 30, "budget_usd": 3}):
        d = server.ok("POST", "/api/v1/optimization/recommend", inputs)
    server.ok(
        "POST",
        "/api/v1/optimization/outcomes",
        {"decision_id": d["decision_id"], "optimizer_used": d["recommended"], "quality": 0.9,
         "actual_cost": d["estimated_cost"] * 1.2 + 0.01, "actual_time_minutes": d["estimated_time_minutes"] + 1},
    )


def test_every_page_loads_without_console_errors(driver: WebDriver, server: Server) -> None:
    seed_loop_data(server)
    open_page(driver, server, "#/playground?trainset_size=200&budget_usd=10")
    wait_text(driver, "dec-optimizer")
    screenshot(driver, "playground", "console-playground.png")
    assert_no_console_errors(driver)

    tid(driver, "nav-map").click()
    wait(driver, lambda d: map_generation(d) >= 1, message="the map was never drawn")
    wait_text(driver, "map-legend")
    chart = tid(driver, "map-chart")
    ActionChains(driver).move_to_element_with_offset(chart, -chart.size["width"] // 5, chart.size["height"] // 8).perform()
    wait_text(driver, "hover-cost", r"\$")
    screenshot(driver, "map", "console-map.png")
    assert_no_console_errors(driver)

    tid(driver, "nav-rules").click()
    wait_text(driver, "rules-revision", r"^[0-9a-f]{6,}")
    screenshot(driver, "rules")
    assert_no_console_errors(driver)

    tid(driver, "nav-jobs").click()
    wait_text(driver, "jobs-list")
    screenshot(driver, "jobs")
    assert_no_console_errors(driver)

    tid(driver, "nav-loop").click()
    wait_text(driver, "stat-decisions")
    wait_text(driver, "stat-examples")
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, '[data-testid="loop-decisions"] canvas'), message="no decisions chart")
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, '[data-testid="loop-timeline"] canvas'), message="no timeline chart")
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, '[data-testid="loop-mape"] canvas'), message="no MAPE chart")
    # A chart tooltip renders under the CSP (the library's default markup would not).
    chart = tid(driver, "loop-decisions")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", chart)
    ActionChains(driver).move_to_element(chart).perform()
    wait(driver, lambda d: "decisions" in tooltip_text(d, "loop-decisions"), message="no tooltip on the decisions chart")
    screenshot(driver, "loop")
    assert_no_console_errors(driver)


def test_every_page_fits_a_narrow_screen(driver: WebDriver, server: Server) -> None:
    # A phone's width (headless Chromium's window stops at 500 px: the viewport is emulated);
    # nothing may stick out sideways.
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 380, "height": 800, "deviceScaleFactor": 1, "mobile": False},
    )
    try:
        for page, ready in [
            ("#/playground?trainset_size=200&budget_usd=10", "dec-optimizer"),
            ("#/map?trainset_size=200&budget_usd=10", "map-legend"),
            ("#/rules", "rules-revision"),
            ("#/jobs", "jobs-list"),
            ("#/loop", "stat-decisions"),
        ]:
            open_page(driver, server, page)
            wait_text(driver, ready)
            wide = driver.execute_script(
                "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
            )
            assert wide[0] <= wide[1], f"{page} is {wide[0]} px wide in a {wide[1]} px window"
            if "map" in page:
                canvas, box = driver.execute_script(
                    "const n = document.querySelector('[data-testid=\"map-chart\"]');"
                    "return [n.querySelector('canvas').clientWidth, n.clientWidth]"
                )
                assert canvas <= box, f"the map is {canvas} px wide in a {box} px box"
        screenshot(driver, "narrow-loop")
        assert_no_console_errors(driver)
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_playground_decides_as_you_type_and_the_link_reproduces_it(driver: WebDriver, server: Server) -> None:
    open_page(driver, server, "#/playground")
    wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, '[data-testid="field-trainset_size"]'))
    type_into(tid(driver, "field-trainset_size"), "200")
    type_into(tid(driver, "field-budget_usd"), "10")
    expected = server.ok("POST", "/api/v1/rules/evaluate", {"trainset_size": 200, "budget_usd": 10})
    wait_text(driver, "dec-optimizer", f"^{re.escape(expected['recommended'])}$")
    wait(driver, lambda d: "budget_usd=10" in d.current_url, message="the inputs are not in the URL")
    reasoning = wait_text(driver, "dec-reasoning", re.escape(expected["reasoning"][:20]))
    assert reasoning == expected["reasoning"]
    assert tid(driver, "dec-trace").is_displayed(), "the explain trace is missing"
    link = tid(driver, "pg-share").get_attribute("href")
    assert link and "trainset_size=200" in link and "budget_usd=10" in link

    driver.get("about:blank")
    driver.get(link)
    wait_text(driver, "dec-optimizer", f"^{re.escape(expected['recommended'])}$")
    assert tid(driver, "dec-reasoning").text == expected["reasoning"]
    assert tid(driver, "field-trainset_size").get_attribute("value") == "200"
    assert tid(driver, "field-budget_usd").get_attribute("value") == "10"
    assert_no_console_errors(driver)


def test_an_invalid_value_shows_the_fields_error(driver: WebDriver, server: Server) -> None:
    open_page(driver, server, "#/playground?trainset_size=200")
    wait_text(driver, "dec-optimizer")
    type_into(tid(driver, "field-trainset_size"), "-3")
    err = wait_text(driver, "error-trainset_size")
    status, body = server.api("POST", "/api/v1/rules/evaluate", {"trainset_size": -3})
    assert status == 422
    detail = next(d for d in body["details"] if d.get("field") == "trainset_size")
    assert detail["message"] in err
    assert "invalid" in tid(driver, "field-trainset_size").get_attribute("class")
    # Fixing it clears the error and decides again.
    type_into(tid(driver, "field-trainset_size"), "200")
    wait(driver, lambda d: tid(d, "error-trainset_size").text == "", message="the error stayed")
    wait(driver, lambda d: tid(d, "pg-decision").get_attribute("data-state") == "ok")
    assert_no_console_errors(driver, allow=(NET_422,))


def test_the_map_redraws_while_the_slider_is_dragged(driver: WebDriver, server: Server) -> None:
    open_page(driver, server, "#/map?trainset_size=200&budget_usd=10")
    wait(driver, lambda d: map_generation(d) >= 1, message="the map was never drawn")
    chart = tid(driver, "map-chart")
    first_gen, first_req = map_generation(driver), chart.get_attribute("data-request")
    assert "x=trainset_size" in first_req and "y=budget_usd" in first_req

    slider = tid(driver, "map-slider")
    before = slider.get_attribute("value")
    width = slider.size["width"]
    ActionChains(driver).click_and_hold(slider).move_by_offset(-width // 6, 0).pause(0.15).move_by_offset(
        -width // 6, 0
    ).pause(0.15).release().perform()
    after = slider.get_attribute("value")
    assert after != before, "the drag did not move the slider"
    wait(
        driver,
        lambda d: map_generation(d) > first_gen and tid(d, "map-chart").get_attribute("data-request") != first_req,
        message="the map did not redraw",
    )
    field = tid(driver, "map-slider-field").get_attribute("value")
    wait(
        driver,
        lambda d: f"{field}={after}" in (tid(d, "map-chart").get_attribute("data-request") or ""),
        message="the last drawn map is not the slider's last value",
    )

    # Guard off.
    gen = map_generation(driver)
    tid(driver, "map-guard-off").click()
    wait(
        driver,
        lambda d: map_generation(d) > gen and tid(d, "map-chart").get_attribute("data-guard") == "false",
        message="guard off was not drawn",
    )
    assert "guard=off" in tid(driver, "map-chart").get_attribute("data-request")

    # Hovering a cell shows its decision and estimate.
    ActionChains(driver).move_to_element_with_offset(chart, 0, 0).perform()
    wait(driver, lambda d: "trainset_size =" in tooltip_text(d, "map-chart"), message="no tooltip on the map")
    wait_text(driver, "hover-optimizer")
    wait_text(driver, "hover-cost", r"\$")
    assert_no_console_errors(driver)


def test_a_reasoning_with_markup_is_shown_as_text(driver: WebDriver, server: Server) -> None:
    # Prepends markup to the reasoning of the rule that decides 200 examples with a $10 budget.
    sel = server.rules / "selection.yaml"
    text = sel.read_text()
    marker = 'reasoning: "Moderate trainset'
    assert marker in text
    sel.write_text(text.replace(marker, f'reasoning: "{XSS_REASONING} Moderate trainset', 1))
    reloaded = server.ok("POST", "/api/v1/rules/reload")
    assert reloaded["result"] == "reloaded"

    open_page(driver, server, "#/playground?trainset_size=200&budget_usd=10")
    shown = wait_text(driver, "dec-reasoning", re.escape(XSS_REASONING))
    assert shown.startswith(XSS_REASONING)
    assert driver.execute_script("return typeof window.__pwned") == "undefined"
    assert not driver.find_elements(By.CSS_SELECTOR, '[data-testid="dec-reasoning"] b, [data-testid="dec-reasoning"] script')
    assert_no_console_errors(driver)


def test_a_hitl_question_is_answered_in_the_console(driver: WebDriver, server: Server) -> None:
    job = server.ok(
        "POST",
        "/api/v1/jobs",
        {"job_type": "optimization", "task": "console test", "payload": {"note": XSS_PAYLOAD, "optimizer": "miprov2"}},
    )
    claimed = server.ok("POST", "/api/v1/jobs/claim", {"worker": "browser-test", "id": job["id"]})
    asked = server.ok(
        "POST",
        f"/api/v1/jobs/{job['id']}/hitl",
        {"lease_token": claimed["lease_token"], "type": "approve_config", "data": {"config": {"auto": "light"}}},
    )
    assert asked["status"] == "pending_hitl"

    open_page(driver, server, "#/jobs")
    row = wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, f'[data-testid="job-row-{job["id"]}"] a'))
    row[0].click()
    wait_text(driver, "job-status", "pending_hitl")
    payload = wait_text(driver, "job-payload", re.escape(XSS_PAYLOAD))
    assert XSS_PAYLOAD in payload
    assert not driver.find_elements(By.CSS_SELECTOR, '[data-testid="job-detail"] img')
    assert driver.execute_script("return typeof window.__pwned_img") == "undefined"
    wait_text(driver, "hitl-data", "auto")
    screenshot(driver, "job-hitl")

    tid(driver, "hitl-approve").click()
    wait_text(driver, "job-status", "^pending$")
    after = server.ok("GET", f"/api/v1/jobs/{job['id']}")
    assert after["status"] == "pending"
    assert after["hitl"]["response"] == {"approved": True}
    assert_no_console_errors(driver)


def test_a_revision_is_rolled_back_in_the_rules_page(driver: WebDriver, server: Server) -> None:
    status = server.ok("GET", "/api/v1/rules/status")
    kept = [k["revision"] for k in status["kept_revisions"]]
    assert len(kept) >= 2, "the earlier test made a second revision"
    serving = status["revision"]
    target = next(r for r in kept if r != serving)

    open_page(driver, server, "#/rules")
    wait_text(driver, "rules-revision", f"^{serving}$")
    tid(driver, f"rollback-{target}").click()
    wait_text(driver, "rules-revision", f"^{target}$")
    wait_text(driver, "rules-result", target)
    assert server.ok("GET", "/api/v1/rules/status")["revision"] == target

    # The map compares with the revision rolled back from (it changed a reasoning text only).
    open_page(driver, server, f"#/map?trainset_size=200&budget_usd=10&compare={serving}")
    wait_text(driver, "map-changed", r"^\d+$")
    assert tid(driver, "map-compare").get_attribute("value") == serving
    assert f"compare={serving}" in tid(driver, "map-chart").get_attribute("data-request")

    open_page(driver, server, "#/rules")
    wait_text(driver, "rules-revision", f"^{target}$")
    # A refused reload shows its diagnostics with file:line:col.
    (server.rules / "cost.yaml").write_text((server.rules / "cost.yaml").read_text() + "\nbad: [\n")
    tid(driver, "rules-reload").click()
    diag = wait_text(driver, "rules-reload-error", r"cost\.yaml:\d+:\d+")
    assert "cost.yaml" in diag
    assert server.ok("GET", "/api/v1/rules/status")["revision"] == target
    assert_no_console_errors(driver, allow=(NET_422,))


def test_a_token_is_asked_once_and_never_put_in_the_url(driver: WebDriver, token_server: Server) -> None:
    status, _ = token_server.api("GET", "/api/v1/rules/status", token="wrong")
    assert status == 401
    driver.get(f"{token_server.url}/#/playground?" + urlencode({"trainset_size": 200, "budget_usd": 10}))
    panel = wait(driver, lambda d: tid(d, "token-panel") if tid(d, "token-panel").is_displayed() else False)
    tid(driver, "token-input").send_keys(TOKEN)
    tid(driver, "token-submit").click()
    wait(driver, lambda d: not panel.is_displayed(), message="the token form stayed")
    wait_text(driver, "dec-optimizer")
    for page in ("map", "rules", "jobs", "loop"):
        tid(driver, f"nav-{page}").click()
        wait(driver, lambda d, p=page: tid(d, f"page-{p}").is_displayed())
    wait_text(driver, "stat-examples")
    # A fresh database: an honest empty state, not an error.
    wait_text(driver, "loop-decisions", "No decisions yet")
    assert tid(driver, "loop-error").text == ""
    tid(driver, "nav-rules").click()
    wait_text(driver, "rules-revision", r"^[0-9a-f]{6,}")
    assert not tid(driver, "token-panel").is_displayed(), "the token was asked again"
    assert TOKEN not in driver.current_url
    assert driver.execute_script("return sessionStorage.getItem('skill-fleet-token')") == TOKEN
    assert_no_console_errors(driver, allow=(NET_401,))


@pytest.fixture(autouse=True)
def _drain_logs(driver: WebDriver) -> None:
    """Each test judges only its own console entries."""
    driver.get_log("browser")
