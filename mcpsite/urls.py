"""URLs of the demo site (the MCP endpoints are routed in asgi.py, ahead of these)."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from oauth2_provider.views import OAuthServerMetadataView

from .demo import oauth, views

urlpatterns = [
    path("", views.home, name="home"),
    path("admin/", admin.site.urls),
    # Sign-in for everyone (the admin's page admits staff only), where the OAuth flow sends users.
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(template_name="admin/login.html", extra_context={"site_header": "mcp_app demo: sign in"}),
        name="login",
    ),
    # The OAuth 2.1 authorization server: /o/authorize/, /o/token/, /o/register/ (dynamic registration)...
    # The consent page and open registration are the demo's own (mcpsite.demo.oauth): the page shows where the
    # code goes, and registration is rate-limited per address. Routed ahead of the toolkit's, same paths.
    path("o/authorize/", oauth.AuthorizationView.as_view(), name="demo-authorize"),
    path("o/register/", oauth.RegistrationView.as_view(), name="demo-register"),
    # OpenID Connect is not offered (mcpsite.demo.oauth.openid_connect_not_offered): its toolkit routes, and the
    # discovery document's path-inserted form, answer a JSON 404 (the toolkit's answer 500 with DEBUG on).
    re_path(r"^o/\.well-known/openid-configuration/?$", oauth.openid_connect_not_offered),
    path("o/.well-known/jwks.json", oauth.openid_connect_not_offered),
    path("o/userinfo/", oauth.openid_connect_not_offered),
    path("o/logout/", oauth.openid_connect_not_offered),
    path(".well-known/openid-configuration/o", oauth.openid_connect_not_offered),
    path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
    # ...whose issuer is <origin>/o: RFC 8414 metadata at /.well-known/oauth-authorization-server/o (and, from the
    # include above, at the /o/.well-known/oauth-authorization-server form some clients try).
    path(".well-known/oauth-authorization-server/o", OAuthServerMetadataView.as_view(), name="oauth-server-metadata"),
]
