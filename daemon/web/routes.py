"""The web application's URLs. They are a public interface (README, "Web application"): extend, never rename.
No URL carries personal data: records by number, search terms in the session (posted, never in a URL)."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from daemon.web import dashboard, decide, exports, listing, login, progress, record, review


def routes() -> list[BaseRoute]:
    return [
        Route("/", dashboard.dashboard, name="dashboard"),
        Route("/login", login.login_form, methods=["GET"], name="login_form"),
        Route("/login", login.login, methods=["POST"], name="login"),
        Route("/logout", login.logout, methods=["POST"], name="logout"),
        Route("/healthz", login.healthz, name="healthz"),
        Route("/records", listing.records, methods=["GET"], name="records"),
        Route("/records", listing.search, methods=["POST"], name="records_search"),
        Route("/records/{id:int}", record.detail, name="record"),
        Route("/records/{id:int}/attachments/{position:int}", record.attachment, name="attachment"),
        Route("/records/{id:int}/raw", record.raw, name="raw"),
        Route("/records/{id:int}/decide/{action}", decide.form, methods=["GET"], name="decide_form"),
        Route("/records/{id:int}/decide/{action}", decide.post, methods=["POST"], name="decide"),
        Route("/records/{id:int}/supersede", record.supersede, methods=["POST"], name="supersede"),
        Route("/records/{id:int}/restore", record.restore, methods=["POST"], name="restore"),
        Route("/review", review.index, name="review"),
        Route("/review/rows/{id:int}", review.row, name="review_row"),
        Route("/review/rows/{id:int}/answer", review.answer, methods=["POST"], name="review_answer"),
        Route("/review/rows/{id:int}/move", review.move, methods=["POST"], name="review_move"),
        Route("/review/rows/{id:int}/merge", review.merge, methods=["POST"], name="review_merge"),
        Route("/review/items/{id:int}/split", review.split, methods=["POST"], name="review_split"),
        Route("/progress", progress.progress, name="progress"),
        Route("/exports", exports.index, name="exports"),
        Route("/exports/{which}.{fmt}", exports.download, name="export_download"),
    ]
