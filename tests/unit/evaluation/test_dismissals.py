"""The rule that adds dismissals to the demo world for `evaluate --dismissals`."""

from datetime import datetime, timedelta

from finverse_reco.demo import generate_world
from finverse_reco.evaluation.dismissals import with_dismissals
from finverse_reco.events import parse_event


def test_customers_dismiss_viewed_products_of_categories_they_dislike():
    world = generate_world(3, n_users=150, n_products=60, n_events=6_000)
    changed, dismissed = with_dismissals(world)
    added = [e for e in changed.events if e["type"] == "dismiss"]
    assert added and len(changed.events) == len(world.events) + len(added)
    assert sum(len(categories) for categories in dismissed.values()) <= len(added)
    category = {p.id: p.category for p in world.products}
    views = {}
    for event in world.events:
        if event["type"] == "product_view":
            views[(event["user_id"], event["data"]["productId"])] = event["timestamp"]
    for event in added:
        parse_event(event)  # a valid event, as the service would store it
        key = (event["user_id"], event["data"]["productId"])
        assert datetime.fromisoformat(event["timestamp"]) == datetime.fromisoformat(
            views[key]
        ) + timedelta(minutes=1)
        assert category[key[1]] in dismissed[key[0]]
    times = [e["timestamp"] for e in changed.events]
    assert times == sorted(times)
