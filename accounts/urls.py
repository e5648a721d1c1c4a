from django.urls import path

from accounts import views

urlpatterns = [
    path("accounts/login/", views.LoginView.as_view(), name="login"),
    path("accounts/logout/", views.logout, name="logout"),
    path("settings/", views.settings_page, name="settings"),
    path("settings/users/", views.user_create, name="settings_user_create"),
    path("settings/users/<int:user_id>/", views.user_update, name="settings_user_update"),
    path("settings/keys/", views.key_create, name="settings_key_create"),
    path("settings/keys/<int:key_id>/revoke/", views.key_revoke, name="settings_key_revoke"),
]
