"""The interactive API docs work on a machine without internet: nothing from a CDN."""

from __future__ import annotations


def test_docs_and_their_assets_are_served_locally(api):
    client = api()
    page = client.get("/docs")
    assert page.status_code == 200
    assert "cdn." not in page.text and "https://" not in page.text.split("</head>")[0]
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert asset in page.text
    script = page.text.split("swagger-ui-bundle.js")[0].rsplit('"', 1)[1] + "swagger-ui-bundle.js"
    assert client.get(script).status_code == 200
    assert client.get("/openapi.json").json()["info"]["title"] == "ketaflow"
