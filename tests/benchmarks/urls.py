"""A trivial async Django view: the cost of Django's request cycle, for comparison."""

from django.http import HttpRequest, JsonResponse
from django.urls import path


async def trivial(request: HttpRequest) -> JsonResponse:
    return JsonResponse({})


urlpatterns = [path("bench/django", trivial)]
