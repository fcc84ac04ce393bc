"""The in-memory lease book: who holds which image, expiry, release."""
from __future__ import annotations

import time

from hitl.store.lease_book import LeaseBook


def test_take_release_drop_and_expiry():
    book = LeaseBook()
    assert book.claim([1], "ann", 60, keep_others=False) == [1]
    assert book.claim([2], "ann", 60, keep_others=False) == [2]  # one at a time: 1 is free
    assert book.holder(1) is None and book.holder(2) == "ann"
    assert book.claim([3, 4], "ann", 60) == [3, 4]  # a page's prefetched images: kept together
    assert book.claim([2, 4, 5], "bob", 60) == [5]  # only what nobody else holds
    book.release("bob")
    assert sorted(book.held_by("ann")) == [2, 3, 4]
    assert book.held_by_others("bob").tolist() == [2, 3, 4]
    assert book.held_by_others("ann").size == 0
    assert list(book.first_free([2, 5, 3, 6], "bob")) == [5, 6]
    assert list(book.first_free([2, 5, 3, 6], "ann")) == [2, 5, 3, 6]
    assert not book.renew(2, "bob", 60) and book.renew(5, "bob", 60)
    book.release("ann", [3])
    assert book.holder(3) is None and book.holder(4) == "ann"
    book.release("bob", [4])                       # not bob's: stays
    assert book.holder(4) == "ann"
    book.drop([4])
    assert book.holder(4) is None
    book.claim([7], "cat", 0.05)
    assert book.holder(7, at_least=1.0) is None    # held, but not for another second
    time.sleep(0.1)
    assert book.holder(7) is None and book.renew(7, "bob", 60)


def test_a_renewed_lease_lapses_when_renewals_stop():
    """A page renews what it holds every tick; once it stops (closed without a word), its
    images free after the renewal window, not the full term. A lease never renewed (a REST
    client's one image) keeps its full term."""
    import time
    book = LeaseBook(renewed_seconds=0.05)
    assert book.claim([1, 2], "ann", 600) == [1, 2]
    assert book.renew(1, "ann", 600)
    assert [i for i, _ in book.others_left("bob")] == [1, 2]
    time.sleep(0.1)
    assert book.holder(1) is None and book.holder(2) == "ann"
    assert book.claim([1, 2], "bob", 600) == [1]
    left = dict(book.others_left("bob"))
    assert list(left) == [2] and 590 < left[2] <= 600
