"""The library's models as MCP resources and data tools (autodiscovered by mcp_app).

- Authors and books are the public catalogue: anyone who reaches the endpoint may read them.
- Members are personal data: only users with the ``library.view_member`` permission (librarians).
- Loans: librarians (``library.view_loan``) see every loan; another signed-in user sees only the
  loans of the member card linked to their account (row-level scoping in the queryset hook).

Books and loans are thousands of rows: paging through them in ``resources/list`` helps no one (the MCP
Inspector gives up after 64 pages), so they are ``listed=False``, reached through their templates and
data tools. The 400 authors and the 600 members (librarians only) stay listed: a few pages.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from mcp_app.permissions import AllowAny, IsAuthenticated
from mcp_app.providers.exposures import ModelResource, expose

from .models import Author, Book, Loan, Member

expose(
    Author,
    fields=["name", "birth_year", "country", "biography"],
    permission_classes=[AllowAny],
    ordering=["name"],
    search_fields=["name", "country"],
    description="Public.",
)

expose(
    Book,
    fields=["title", "isbn", "author", "genre", "published", "pages"],
    permission_classes=[AllowAny],
    ordering=["-published"],
    search_fields=["title", "isbn"],
    listed=False,
    description="Public; each links to its author.",
)

# Not exposed: email and card number (and the linked account). Fields are an allowlist.
expose(Member, fields=["name", "joined"], description="Librarians only.")


class LoanResource(ModelResource):
    def get_queryset(self, user: Any) -> QuerySet[Loan]:
        loans = super().get_queryset(user)
        if user is None:
            return loans.none()
        if user.has_perm("library.view_loan"):
            return loans
        return loans.filter(member__user=user)  # everyone else: their own loans only


expose(
    Loan,
    fields=["book", "member", "borrowed", "due", "returned"],
    resource_class=LoanResource,
    permission_classes=[IsAuthenticated],
    ordering=["-borrowed"],
    listed=False,
    description="Librarians see all loans, members their own.",
)
