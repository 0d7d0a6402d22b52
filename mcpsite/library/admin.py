from django.contrib import admin

from .models import Author, Book, Loan, Member


@admin.register(Author)
class AuthorAdmin(admin.ModelAdmin):
    list_display = ["name", "country", "birth_year"]
    search_fields = ["name"]


@admin.register(Book)
class BookAdmin(admin.ModelAdmin):
    list_display = ["title", "author", "genre", "published"]
    list_filter = ["genre"]
    search_fields = ["title", "isbn"]
    raw_id_fields = ["author"]


@admin.register(Member)
class MemberAdmin(admin.ModelAdmin):
    list_display = ["name", "card_number", "joined"]
    search_fields = ["name", "card_number"]
    raw_id_fields = ["user"]


@admin.register(Loan)
class LoanAdmin(admin.ModelAdmin):
    list_display = ["book", "member", "borrowed", "due", "returned"]
    list_filter = ["returned"]
    raw_id_fields = ["book", "member"]
