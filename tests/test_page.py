"""The web page in Chromium speaks of movies: the index by its size and date, heads in words,
scores labelled by what they are, "Why" across the width, and every similar movie a URL."""

from __future__ import annotations

import re

import pytest
from _chromium import NO_BROWSER, browser, data_ids
from _serving import index_with_heads, page_in_chromium

pytestmark = pytest.mark.slow  # `make test-fast` leaves these out

SCORE = re.compile(r"^(similarity \d\.\d\d|match -?\d+\.\d \(poster \+ plot, standardised\))$")


@pytest.fixture(scope="module")
def index_dir(fixture_index_dir, tmp_path_factory):
    return index_with_heads(fixture_index_dir, tmp_path_factory.mktemp("page") / "index")


@pytest.mark.skipif(browser() is None, reason=NO_BROWSER)
def test_page_speaks_of_movies_and_similar_results_have_urls(service, client, tmp_path):
    from selenium.webdriver.common.by import By

    index = service.current.index
    css = By.CSS_SELECTOR
    info = client.get("/v1/index").json()

    def text(d, id_):
        return d.find_element(By.ID, id_).text

    def tiles(d, where):
        return data_ids(d, where + " .tile")

    def hash_(d):
        return d.execute_script("return location.hash")

    with page_in_chromium(service, tmp_path / "profile") as (url, driver, wait):
        driver.get(url + "/")
        wait.until(lambda d: "movies" in text(d, "index-info"))
        date = info["updated"][:10]
        assert re.fullmatch(rf"110 movies · updated {date} \d\d:\d\d", text(driver, "index-info"))
        heads = driver.find_elements(css, "#head option")
        words = {o.get_attribute("value"): o.text for o in heads}
        assert words == {
            "": "best for the input",
            "linear-plot": "linear classifier on plot",
            "linear-poster": "linear classifier on poster",
        }

        # search: results labelled by what their score is, each a movie's URL
        driver.find_element(By.ID, "search").send_keys("a haunted house at night")
        driver.find_element(By.ID, "search-btn").click()
        wait.until(lambda d: len(tiles(d, "#grid")) == 12)
        labels = driver.find_elements(css, "#grid .score-label")
        assert len(labels) == 12 and all(re.match(SCORE, s.text) for s in labels)
        assert "Similarity: the cosine" in text(driver, "results-note")
        found = tiles(driver, "#grid")[0]
        driver.find_element(css, f'#grid .tile[data-id="{found}"]').click()
        wait.until(lambda d: hash_(d) == f"#/movie/{found}")
        driver.back()
        wait.until(lambda d: d.find_element(By.ID, "view-home").is_displayed())

        # a movie's page: the head in words, its more-like-this labelled and linked
        item = index.items[3]
        driver.get(url + f"/#/movie/{item['id']}")
        wait.until(lambda d: len(tiles(d, "#movie-similar")) == 12)
        wait.until(lambda d: text(d, "movie-head"))
        head = driver.find_element(By.ID, "movie-head")
        assert re.fullmatch(r"by a linear classifier on (poster|plot)", head.text)
        assert re.fullmatch(r"head linear-(poster|plot)", head.get_attribute("title"))
        labels = driver.find_elements(css, "#movie-similar .score-label")
        assert labels and all(re.match(SCORE, s.text) for s in labels), [s.text for s in labels]
        assert all(s.get_attribute("title") for s in labels)
        assert text(driver, "movie-similar-note").startswith(("Similarity:", "Match:"))

        # "Why": one row per genre, across the card
        rows = driver.find_elements(css, "#movie-why .why-genre")
        card = driver.find_element(By.ID, "movie").size["width"]
        assert rows and all(r.size["width"] > card * 0.8 for r in rows)
        for caption in driver.find_elements(css, "#movie-why figcaption .muted"):
            assert re.match(SCORE, caption.text), caption.text
        body = driver.find_element(By.TAG_NAME, "body").text.lower()
        assert "generation" not in body and "linear-" not in body
        driver.set_window_size(1200, 3200)  # the whole page, for a look at it
        driver.save_screenshot(str(tmp_path / "movie.png"))
        driver.set_window_size(1200, 1000)

        # a similar result opens that movie's URL; Back returns to the first movie
        other = tiles(driver, "#movie-similar")[0]
        driver.find_element(css, f'#movie-similar .tile[data-id="{other}"]').click()
        wait.until(lambda d: hash_(d) == f"#/movie/{other}")
        other_title = index.items[index.row_of[other]]["title"] or other
        wait.until(lambda d: text(d, "movie-title").startswith(other_title))
        driver.back()
        wait.until(lambda d: hash_(d) == f"#/movie/{item['id']}")
        wait.until(lambda d: text(d, "movie-title").startswith(item["title"]))
