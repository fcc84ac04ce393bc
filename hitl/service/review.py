"""The review actions (pages of one predicted class, suspects, more like this) over
hitl/review.py's store-aware layer; `Service` mixes them in."""
from __future__ import annotations

from hitl.errors import BadInput
from hitl.review import Review
from hitl.service.guard import LABELER, action, whole


class ReviewService:
    """The review methods of the service layer (`hitl/service/` mixes this in).

    Every method takes the caller first, declares its role (reviewing is labeling) and
    answers a plain dict; a refusal is a typed error (hitl/errors.py). The caller's name is
    who the page is leased to and who the labels are recorded for. A change to labels keeps
    the own-work rule of labeling (`_may_change`, hitl/service/labeling.py).
    """

    session: object

    @property
    def review(self) -> Review:
        review = getattr(self, "_review", None)
        if review is None or review.session is not self.session:
            review = self._review = Review(self.session)
        return review

    @action(LABELER)
    def review_batch(self, caller, class_name: str, n: int = 24, band=None) -> dict:
        """A page of unlabeled images predicted as class_name, leased to the caller."""
        return self.review.review_batch(caller.name, class_name, n, band)

    @action(LABELER)
    def accept_batch(self, caller, image_ids, class_name: str, rejected_ids=None,
                     relabels: dict | None = None) -> dict:
        """The page's unmarked images become class_name; one undo reverts the page."""
        self._may_change(caller, _whole_ids([*(image_ids or []), *(relabels or {})]))
        return self.review.accept_batch(caller.name, image_ids, class_name, rejected_ids,
                                        relabels)

    @action(LABELER)
    def suspects(self, caller, n: int = 24) -> dict:
        """Labels the out-of-sample model disagrees with most, leased to the caller."""
        return self.review.suspects(caller.name, n)

    @action(LABELER)
    def keep_suspect(self, caller, image_id: int, seen_label: str | None = None) -> dict:
        """Keep a suspect's label; seen_label (what the labeler saw) guards against a change."""
        image_id = whole(image_id, "image_id")
        self._may_change(caller, [image_id])
        return self.review.keep(caller.name, image_id, seen_label)

    @action(LABELER)
    def remove_suspect(self, caller, image_id: int, seen_label: str | None = None) -> dict:
        image_id = whole(image_id, "image_id")
        self._may_change(caller, [image_id])
        return self.review.remove(caller.name, image_id, seen_label)

    @action(LABELER)
    def relabel_suspect(self, caller, image_id: int, class_name: str,
                        seen_label: str | None = None) -> dict:
        image_id = whole(image_id, "image_id")
        self._may_change(caller, [image_id])
        return self.review.relabel(caller.name, image_id, class_name, seen_label)

    @action(LABELER)
    def undo_page(self, caller) -> dict:
        """Undo the caller's last action, a whole review page at once; says which images."""
        return self.review.undo(caller.name)

    @action(LABELER)
    def similar(self, caller, image_id: int, n: int = 24) -> dict:
        """The n unlabeled images nearest to image_id, leased to the caller as a page."""
        return self.review.similar(caller.name, whole(image_id, "image_id"), n)


def _whole_ids(image_ids) -> list[int]:
    if not isinstance(image_ids, (list, tuple)):
        raise BadInput("Image ids must be a list of whole numbers.")
    return [whole(i, "Image ids") for i in image_ids]
