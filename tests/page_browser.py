"""Drives the live page (GET /) in a real headless Chromium, for tests/tests/page.rs.

Opens the page, clicks through the category tree (a top-level category, then one of its
children), waits until every profile column shows a list for that category, and checks that
the items shown (ids and order) equal GET /v1/top/{category}?profile=P&limit=N for each
profile — polling, since the lists are live — and that each column then updates without a
reload (a newer `as_of`). Also checks the health bar says "ready" and the
movers panel answered (a table, or a "movers not available" line), and that the browser logged
no JavaScript error. Prints one JSON line (what it saw) and exits 0, or says what differed and
exits 1.

    python page_browser.py --url http://127.0.0.1:8080 [--screenshot out.png]
"""

import argparse
import json
import sys
import tempfile
import time
import urllib.parse
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

LIMIT = 20  # the page's default "show 20 items"


def chromium(user_data_dir):
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1000",
        f"--user-data-dir={user_data_dir}",
    ]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))


def wait(what, timeout, condition):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = condition()
            if last:
                return last
        except Exception as error:  # the page is re-rendering: try again
            last = error
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout} s (last: {last!r})")


def top(url, category, profile):
    path = "".join("/" + urllib.parse.quote(segment, safe="") for segment in category.split("/") if category)
    query = urllib.parse.urlencode({"profile": profile, "limit": LIMIT})
    with urllib.request.urlopen(f"{url}/v1/top{path}?{query}", timeout=20) as response:
        return json.load(response)


def shown(driver, profile):
    """(category, [item ids in order]) of a profile's column."""
    column = driver.find_element(By.CSS_SELECTOR, f'.column[data-profile="{profile}"]')
    ids = [li.get_attribute("data-item-id") for li in column.find_elements(By.CSS_SELECTOR, "ol.items > li")]
    return column.get_attribute("data-category"), ids


def click_category(driver, category):
    link = wait(f"tree link {category!r}", 60, lambda: driver.find_element(
        By.CSS_SELECTOR, f'#categories a[data-category="{category}"]'))
    link.click()
    wait(f"{category!r} selected", 60, lambda: driver.find_element(
        By.CSS_SELECTOR, f'#categories a.selected[data-category="{category}"]'))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--patience", type=float, default=120)
    parser.add_argument("--screenshot")
    args = parser.parse_args()
    patience = args.patience
    with urllib.request.urlopen(f"{args.url}/assets/profiles.json", timeout=20) as response:
        profiles = [p["name"] for p in json.load(response)["profiles"]]
    with tempfile.TemporaryDirectory() as user_data_dir:
        driver = chromium(user_data_dir)
        try:
            driver.get(args.url + "/")
            wait("one column per profile", patience, lambda: [
                c.get_attribute("data-profile") for c in driver.find_elements(By.CSS_SELECTOR, ".column")
            ] == profiles)
            # Into a top-level category, then one of its children, by clicking the tree.
            top_level = wait("a top-level category in the tree", patience, lambda: [
                a.get_attribute("data-category")
                for a in driver.find_elements(By.CSS_SELECTOR, '#categories a[data-category]')
                if a.get_attribute("data-category") and "/" not in a.get_attribute("data-category")
            ])[0]
            click_category(driver, top_level)
            child = wait(f"a child of {top_level!r} in the tree", patience, lambda: [
                a.get_attribute("data-category")
                for a in driver.find_elements(By.CSS_SELECTOR, '#categories a[data-category]')
                if a.get_attribute("data-category").startswith(top_level + "/")
            ])[0]
            click_category(driver, child)
            title = driver.find_element(By.ID, "title").text
            if title != child.split("/")[-1]:
                raise AssertionError(f"title {title!r} for {child!r}")

            # Each profile's column shows /v1/top's list for the category (ids and order).
            seen = {}
            for profile in profiles:
                def agrees():
                    category, ids = shown(driver, profile)
                    want = [item["item_id"] for item in top(args.url, child, profile)["items"]]
                    seen[profile] = {"category": category, "shown": ids, "top": want}
                    return category == child and len(ids) > 0 and ids == want
                try:
                    wait(f"column {profile} equal to /v1/top/{child}", patience, agrees)
                except AssertionError as error:
                    raise AssertionError(f"{error}; last seen {json.dumps(seen[profile])}") from None

            # The columns keep updating without a reload (scores decay: a list is re-rendered
            # at least every table.refresh while snapshots come).
            for profile in profiles:
                column = driver.find_element(By.CSS_SELECTOR, f'.column[data-profile="{profile}"]')
                as_of = column.get_attribute("data-as-of")
                wait(f"column {profile} updated live after {as_of}", patience,
                     lambda: column.get_attribute("data-as-of") > as_of)

            ready = wait("health badge", patience, lambda: driver.find_element(By.ID, "ready").text == "ready")
            movers = wait("movers panel", patience, lambda: (
                driver.find_element(By.ID, "movers-body").text.strip() not in ("", "…")
                and driver.find_element(By.ID, "movers-body").text.strip()))
            rate = wait("ingest rate", patience, lambda: driver.find_element(By.ID, "rate").text not in ("", "–")
                        and driver.find_element(By.ID, "rate").text)
            errors = [entry for entry in driver.get_log("browser")
                      if entry["level"] == "SEVERE" and "/v1/movers" not in entry["message"]]
            if errors:
                raise AssertionError(f"JavaScript errors: {errors}")
            if args.screenshot:
                time.sleep(1)
                driver.save_screenshot(args.screenshot)
            print(json.dumps({"category": child, "profiles": profiles, "lists": seen,
                              "ready": ready, "movers": movers, "rate": rate}))
        finally:
            driver.quit()


if __name__ == "__main__":
    try:
        main()
    except AssertionError as error:
        print(f"page_browser: {error}", file=sys.stderr)
        sys.exit(1)
