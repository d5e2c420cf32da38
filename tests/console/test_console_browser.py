"""The console in a real browser: headless Debian Chromium driven by Selenium (Debian chromium-driver) against a
live `knhk serve`. One browser session for the whole module: sign in as a finance validator and as compliance,
approve a held proposal and watch it promote, be refused where segregation of duties forbids, verify a receipt
in the browser (WebCrypto) and see a tampered bundle fail, the idle timeout enforced, and axe-core finding no
serious accessibility violation on the main pages. Screenshots of the main pages go to docs/console/."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from knhk.config import Settings
from knhk.console import local_sign_in_code
from knhk.identity.local import LocalIssuer
from support.locks import exclusive
from support.serve import free_port, serve

HERE = Path(__file__).resolve().parent
SHOTS = HERE.parent.parent / "docs" / "console"
IDLE_S = 6
COMMENT = "<http://www.w3.org/2000/01/rdf-schema#comment>"


def _axe_source() -> str:
    npm = shutil.which("npm")
    assert npm, "npm is needed for axe-core (Debian: npm)"
    target = HERE / "axe" / "node_modules" / "axe-core" / "axe.min.js"
    with exclusive(HERE / "axe" / ".npm-ci.lock"):  # parallel test workers: one runs npm ci
        if not target.exists():
            subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=HERE / "axe",
                           check=True, capture_output=True, timeout=300)
    return target.read_text()


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[str, Settings]]:
    data = Path(tempfile.mkdtemp(prefix="knhk-console-"))
    env = {"KNHK_DATA_DIR": str(data), "KNHK_CYCLE_INTERVAL_S": "0", "KNHK_VERIFY_INTERVAL_S": "0",
           "KNHK_CHECKPOINT_INTERVAL_S": "0", "KNHK_CONSOLE_SESSION_IDLE_S": str(IDLE_S)}
    try:
        with serve(env) as (url, _proc):
            yield url, Settings(data_dir=data)
    finally:
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    for tool in ("chromium", "chromedriver"):
        assert shutil.which(tool), f"{tool} is needed (Debian: chromium, chromium-driver; scripts/test-tools.txt)"
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _api(url: str, settings: Settings, *roles: str, subject: str) -> dict[str, str]:
    token = LocalIssuer.from_settings(settings).mint(roles, subject=subject, mfa=True).token
    return {"Authorization": f"Bearer {token}"}


def _held_proposal(url: str, settings: Settings) -> str:
    body = {"sector": "finance", "rationale": "document accounts", "additions": [
        ["<https://knhk.dev/ns/finance#Account>", COMMENT, '"A customer account."']]}
    created = httpx.post(f"{url}/api/v1/proposals", json=body,
                         headers=_api(url, settings, "proposer", subject="paul@bank.example"), timeout=30)
    assert created.status_code == 201, created.text
    pid = str(created.json()["id"])
    validated = httpx.post(f"{url}/api/v1/proposals/{pid}/validate",
                           headers=_api(url, settings, "validator", subject="v@bank.example"), timeout=30)
    assert validated.json()["outcome"] == "held", validated.text
    return pid


def _outcome(driver: WebDriver) -> str:
    """The recorded-decision notice of the page the decision redirected to (waiting for that navigation)."""
    return str(WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.ID, "outcome"))[0].text)


def sign_in(driver: WebDriver, url: str, settings: Settings, name: str, roles: list[str], sector: str = "") -> None:
    driver.delete_all_cookies()
    driver.get(f"{url}/console/login")
    driver.find_element(By.ID, "code").send_keys(local_sign_in_code(settings))
    driver.find_element(By.ID, "name").send_keys(name)
    for role in roles:
        driver.find_element(By.ID, f"role-{role}").click()
    if sector:
        driver.find_element(By.CSS_SELECTOR, f"#sector option[value='{sector}']").click()
    driver.find_element(By.ID, "sign-in").click()
    WebDriverWait(driver, 10).until(lambda d: name in d.find_element(By.ID, "who").text)


def check_accessibility(driver: WebDriver, axe: str) -> list[str]:
    driver.execute_script(axe)
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']}).then((r) => done(JSON.stringify(r.violations)));")
    return [f"{v['id']} ({v['impact']}): {v['help']}" for v in json.loads(result)
            if v["impact"] in ("serious", "critical")]


def shoot(driver: WebDriver, name: str) -> None:
    if os.environ.get("KNHK_CONSOLE_SCREENSHOTS"):
        SHOTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SHOTS / f"{name}.png"))


def test_console_flows_in_chromium(live: tuple[str, Settings], browser: WebDriver) -> None:
    url, settings = live
    axe = _axe_source()
    pid = _held_proposal(url, settings)
    problems: dict[str, list[str]] = {}

    # the author may not approve their own proposal: refused by the application, shown by the page
    sign_in(browser, url, settings, "paul@bank.example", ["validator", "proposer"], "compliance")
    browser.get(f"{url}/console/proposals/{pid}")
    browser.find_element(By.ID, "approve").click()
    refused = WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "refused")).text
    assert "Refused" in refused, refused

    # a finance validator approves: still held (finance needs compliance too)
    sign_in(browser, url, settings, "fiona@bank.example", ["validator"], "finance")
    browser.get(f"{url}/console/")
    problems["overview"] = check_accessibility(browser, axe)
    shoot(browser, "overview")
    browser.find_element(By.CSS_SELECTOR, f"a[href$='/proposals/{pid}']").click()
    assert "FIN-APPROVAL-001" in browser.find_element(By.ID, "doctrines").text
    problems["proposal"] = check_accessibility(browser, axe)
    shoot(browser, "proposal")
    browser.find_element(By.ID, "reason").send_keys("account comment reviewed")
    browser.find_element(By.ID, "approve").click()
    assert "held" in _outcome(browser)

    # compliance approves: the quorum is reached and the loop promotes it
    sign_in(browser, url, settings, "carl@bank.example", ["validator"], "compliance")
    browser.get(f"{url}/console/proposals/{pid}")
    browser.find_element(By.ID, "approve").click()
    assert "promoted" in _outcome(browser)
    assert browser.find_element(By.ID, "status").text.startswith("promoted")
    browser.get(f"{url}/console/snapshots?sector=finance")
    problems["lineage"] = check_accessibility(browser, axe)
    shoot(browser, "lineage")

    # the promotion's receipt, verified in the browser; then a tampered bundle fails
    browser.get(f"{url}/console/receipts?kind=snapshot.promoted&sector=finance")
    problems["receipts"] = check_accessibility(browser, axe)
    browser.find_element(By.CSS_SELECTOR, "#receipts tbody a").click()
    browser.find_element(By.ID, "fetch-verify").click()
    verdict = WebDriverWait(browser, 15).until(lambda d: d.find_element(By.CSS_SELECTOR, "#verdict[data-result]"))
    assert verdict.get_attribute("data-result") == "verified", verdict.text
    assert "Verified in this browser" in verdict.text
    problems["receipt"] = check_accessibility(browser, axe)
    shoot(browser, "receipt-verified")
    bundle = json.loads(browser.find_element(By.ID, "bundle").get_attribute("value") or "{}")
    bundle["entry"]["outcome"] = "forced"
    browser.execute_script("document.getElementById('bundle').value = arguments[0];"
                           "document.getElementById('verdict').removeAttribute('data-result');", json.dumps(bundle))
    browser.find_element(By.ID, "verify-text").click()
    verdict = WebDriverWait(browser, 15).until(lambda d: d.find_element(By.CSS_SELECTOR, "#verdict[data-result]"))
    assert verdict.get_attribute("data-result") == "failed"
    assert "entry id is not the SHA-256 of its payload" in verdict.text
    shoot(browser, "receipt-tampered")

    # the idle timeout: no request for longer than it, and the session is gone server-side
    time.sleep(IDLE_S + 1)
    browser.get(f"{url}/console/")
    assert "/console/login" in browser.current_url
    problems["login"] = check_accessibility(browser, axe)
    shoot(browser, "login")
    assert {page: found for page, found in problems.items() if found} == {}


def _text(driver: WebDriver) -> str:
    return str(driver.find_element(By.TAG_NAME, "body").text[:1500])


def test_oidc_sign_in_with_pkce_against_a_real_provider(browser: WebDriver) -> None:
    """The authorization code flow (PKCE, state, nonce) against the real oidc-provider of the service tests:
    the provider's login page, back to the console as a compliance validator with the roles of the token."""
    from service.auth.oidc_support import ISSUER_GROUP_ROLES, OidcProvider

    port = free_port()
    client = {"client_id": "knhk-console", "client_secret": "console-" + "s" * 32,
              "redirect_uris": [f"http://127.0.0.1:{port}/console/login/callback"]}
    accounts = {"carl": {"groups": ["knhk-validators"], "sector": "compliance", "amr": ["pwd"]}}
    provider = OidcProvider.start(code_clients=[client], accounts=accounts)
    data = Path(tempfile.mkdtemp(prefix="knhk-console-oidc-"))
    issuers = [{"issuer": provider.issuer, "audience": "urn:knhk:api", "group_roles": ISSUER_GROUP_ROLES}]
    env = {"KNHK_DATA_DIR": str(data), "KNHK_CYCLE_INTERVAL_S": "0", "KNHK_VERIFY_INTERVAL_S": "0",
           "KNHK_CHECKPOINT_INTERVAL_S": "0", "KNHK_OIDC_ISSUERS": json.dumps(issuers),
           "KNHK_CONSOLE_OIDC_CLIENT_ID": client["client_id"],
           "KNHK_CONSOLE_OIDC_CLIENT_SECRET": client["client_secret"],
           "KNHK_CONSOLE_OIDC_SCOPES": "openid knhk"}
    try:
        with serve(env, port=port) as (url, _proc):
            browser.delete_all_cookies()
            browser.get(f"{url}/console/receipts")
            browser.find_element(By.ID, "sign-in").click()
            try:
                WebDriverWait(browser, 15).until(lambda d: d.current_url.startswith(provider.issuer))
            except Exception:
                raise AssertionError(f"{browser.current_url}: {_text(browser)}") from None
            assert "code_challenge_method=S256" in browser.current_url or "/interaction/" in browser.current_url
            browser.find_element(By.NAME, "login").send_keys("carl")
            browser.find_element(By.NAME, "password").send_keys("any")
            browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
            try:
                WebDriverWait(browser, 15).until(lambda d: d.current_url.startswith(f"{url}/console/receipts"))
            except Exception:
                raise AssertionError(f"{browser.current_url}: {_text(browser)}") from None
            who = browser.find_element(By.ID, "who").text
            assert who == "carl · validator · compliance", who
            # the session cookie is the console's own; no token is kept in the browser's storage
            storage = browser.execute_script("return [localStorage.length, sessionStorage.length, document.cookie]")
            assert storage == [0, 0, ""]
            # a replayed callback (state used up) is refused
            browser.get(f"{url}/console/login/callback?state=replayed&code=x")
            assert "401" in browser.find_element(By.ID, "error").text
    finally:
        provider.stop()
        shutil.rmtree(data, ignore_errors=True)
