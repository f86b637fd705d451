"""The web console at /ui/ in a real browser: Debian's chromium, headless, driven by
Selenium through chromium-driver, against one real node process.

A certificate is issued for a fresh domain (``trustchain ca issue``); the browser opens
/ui/, types the domain in the search box, submits, clicks through to the certificate and
finds its names, its two embedded SCTs and "good"; after ``trustchain ca revoke`` a
reload shows "revoked".  Bad input answers with a 4xx page (checked over plain HTTP).
Missing chromium or chromedriver fails the test (scripts/install-test-tools.sh installs
them), never skips it.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from bootstrap.init import InitResult
from tests.support import NodeProcess, run_cli

WAIT = 15.0


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    chromium = shutil.which("chromium")
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        pytest.fail("the console test needs Debian's chromium and chromium-driver "
                    "(scripts/install-test-tools.sh installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def make_csr(tmp_path: Path, *names: str) -> Path:
    san = ",".join(f"DNS:{n}" for n in names)
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", tmp_path / "key.pem",
                    "-subj", f"/CN={names[0]}", "-addext", f"subjectAltName={san}",
                    "-out", tmp_path / "csr.pem"], check=True, capture_output=True)
    return tmp_path / "csr.pem"


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_search_click_through_and_revocation(node: InitResult, data_dir: Path, tmp_path: Path,
                                            node_processes: list[NodeProcess],
                                            browser: WebDriver) -> None:
    proc = NodeProcess.start(data_dir)
    node_processes.append(proc)
    proc.wait_ready()
    admin = ["--data-dir", str(data_dir), "--server", "[{}]:{}".format(*proc.address("quic"))]
    registered = run_cli("network", "register", "alpha", *admin)
    assert registered.returncode == 0, registered.stderr
    domain = f"console-{secrets.token_hex(4)}.alpha.trust.example.net"
    issued = run_cli("ca", "issue", "--csr", make_csr(tmp_path, domain, f"www.{domain}"),
                     "--network", "alpha", *admin)
    assert issued.returncode == 0, issued.stderr
    leaf = x509.load_pem_x509_certificates(issued.stdout.encode())[0]
    serial = f"{leaf.serial_number:x}"
    host, port = proc.address("http")
    base = f"http://[{host}]:{port}"

    wait = WebDriverWait(browser, WAIT)
    browser.get(f"{base}/ui/")
    box = wait.until(ec.presence_of_element_located((By.ID, "q")))
    box.send_keys(domain)
    browser.find_element(By.ID, "search").click()

    def found(driver: WebDriver) -> object:
        links = driver.find_elements(By.CSS_SELECTOR, "a.certificate")
        if not links:  # the index catches up after each sequencing: ask again
            driver.refresh()
        return links[0] if links else False

    link = wait.until(found)
    assert link.text == serial
    results = browser.find_element(By.CSS_SELECTOR, "table.results").text
    assert domain in results and f"www.{domain}" in results
    assert results.count("precertificate") == 2  # one entry in each of the node's two logs
    link.click()

    status = wait.until(ec.presence_of_element_located((By.ID, "status")))
    assert status.text == "good"
    sans = browser.find_element(By.ID, "sans").text.split("\n")
    assert sans == [domain, f"www.{domain}"]
    scts = browser.find_elements(By.CSS_SELECTOR, "#scts tr.sct")
    assert len(scts) == 2
    assert all("(this node)" in row.text for row in scts)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#entries tbody tr")) == 2

    revoked = run_cli("ca", "revoke", serial, "--reason", "key-compromise", *admin)
    assert revoked.returncode == 0, revoked.stderr
    browser.refresh()
    wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "revoked"))
    assert "keyCompromise" in browser.find_element(By.CSS_SELECTOR, ".detail").text
    screenshot = tmp_path / "console-certificate.png"
    assert browser.save_screenshot(str(screenshot))
    print(f"screenshot: {screenshot}")

    # The other pages render; bad input gets a 4xx page, never a 500.
    for path, texts in (("/ui/logs", ["log signature", "tree size"]),
                        ("/ui/zones", ["trust.example.net.", "signed"]),
                        ("/ui/federation", ["Validators", "Evidence"])):
        browser.get(base + path)
        text = wait.until(ec.presence_of_element_located((By.TAG_NAME, "main"))).text
        assert all(t in text for t in texts), (path, text)
    for path, code in (("/ui/search?q=%3Cscript%3E", 400), ("/ui/search?q=" + "a" * 300, 400),
                       ("/ui/search?q=", 400), ("/ui/certificate/xyz", 400),
                       ("/ui/certificate/" + "f" * 100, 400),
                       ("/ui/certificate/1234abcd", 404), ("/ui/nothing", 404)):
        assert status_of(base + path) == code, path
