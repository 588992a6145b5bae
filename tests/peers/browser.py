#!/usr/bin/env python3
"""Drives the dashboard in headless Chromium (Debian's chromium and
chromium-driver, through Selenium's WebDriver client) the way a reporting
lead would: look at the worklist, sign in, acknowledge an alarm through its
form, open the study page. Prints what each page showed as JSON for the
Rust test to assert on, and saves screenshots for a person to look at.

Usage: browser.py BASE_URL USER PASSWORD ALARM_ID STUDY_UID SHOTS_DIR
Reads nothing but loopback addresses; never downloads a driver.
"""

import json
import os
import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait


def main():
    base, user, password, alarm_id, study_uid, shots = sys.argv[1:7]
    os.makedirs(shots, exist_ok=True)
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        "--no-first-run",
        "--disable-background-networking",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(
        service=Service(executable_path="/usr/bin/chromedriver"), options=options
    )
    wait = WebDriverWait(driver, 20)
    out = {}
    try:
        # The worklist, open to read on loopback without signing in.
        driver.get(base + "/")
        wait.until(ec.presence_of_element_located((By.ID, "worklist")))
        out["worklist_title"] = driver.title
        out["worklist_text"] = driver.find_element(By.TAG_NAME, "body").text
        out["worklist_rows"] = [
            {
                "class": row.get_attribute("class"),
                "text": row.text,
            }
            for row in driver.find_elements(By.CSS_SELECTOR, "#worklist tbody tr")
        ]
        out["chart_present"] = bool(driver.find_elements(By.CSS_SELECTOR, "svg"))
        driver.save_screenshot(os.path.join(shots, "worklist.png"))

        # Acknowledging needs a signed-in user: the form sends us to sign in.
        driver.get(base + "/login?next=/alarms")
        wait.until(ec.presence_of_element_located((By.NAME, "password")))
        driver.find_element(By.NAME, "user").send_keys(user)
        driver.find_element(By.NAME, "password").send_keys(password)
        driver.find_element(By.CSS_SELECTOR, "form button[type=submit], form input[type=submit]").click()
        wait.until(ec.url_contains("/alarms"))
        out["signed_in_text"] = driver.find_element(By.TAG_NAME, "body").text

        form = driver.find_element(
            By.CSS_SELECTOR, f"form[action='/alarms/{alarm_id}/ack']"
        )
        form.find_element(By.NAME, "reason").send_keys(
            "Reviewed by the reporting lead; outsourced for reporting"
        )
        duration = form.find_elements(By.NAME, "for")
        if duration and duration[0].tag_name == "select":
            Select(duration[0]).select_by_value("4h")
        form.find_element(By.CSS_SELECTOR, "button[type=submit], input[type=submit]").click()
        # The page confirms in its flash message (its script then tidies the
        # query string away, so the URL is no witness).
        wait.until(
            ec.text_to_be_present_in_element((By.CSS_SELECTOR, ".flash"), "acknowledged")
        )
        out["flash"] = driver.find_element(By.CSS_SELECTOR, ".flash").text
        out["after_ack_url"] = driver.current_url
        out["after_ack_text"] = driver.find_element(By.TAG_NAME, "body").text
        driver.save_screenshot(os.path.join(shots, "alarms.png"))

        driver.get(base + "/studies/" + study_uid)
        wait.until(ec.presence_of_element_located((By.ID, "timeline")))
        out["study_text"] = driver.find_element(By.TAG_NAME, "body").text
        driver.save_screenshot(os.path.join(shots, "study.png"))
    except Exception:
        # What the browser was showing helps more than a bare timeout.
        sys.stderr.write("at %s:\n%s\n" % (driver.current_url, driver.page_source[:4000]))
        raise
    finally:
        driver.quit()
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
