package policies
test_allow_all if {
allow_all
}
test_allow_all_anonymous_user if {
allow_all with input as {
"user": {
"roles": []
}
}
}
test_allow_all_authenticated_user if {
allow_all with input as {
"user": {
"roles": [
{
"roleId": "control-plane-editor",
"name": "editor",
"description": "editor",
"permissions": [
"console.data-fabric.control-plane.editor"
]
}
]
}
}
}
# ======================================= #
test_allow_manage_cp_users_default if {
not allow_manage_cp_users
}
test_allow_manage_cp_users_not_manager if {
not allow_manage_cp_users with input as {
"user": {
"roles": [
{
"roleId": "control-plane-editor",
"name": "editor",
"description": "editor",
"permissions": [
"console.data-fabric.control-plane.editor"
]
}
]
}
}
}
test_allow_manage_cp_users_manager if {
allow_manage_cp_users with input as {
"user": {
"roles": [
{
"roleId": "control-plane-super-user",
"name": "manager",
"description": "manager",
"permissions": [
"console.data-fabric.control-plane.manage"
]
}
]
}
}
}
# ======================================= #
test_fd_control_plane_allow_view_default if {
not fd_control_plane_allow_view
}
test_fd_control_plane_allow_view_no_permissions if {
not fd_control_plane_allow_view with input as {
"user": {
"roles": [
{
"roleId": "other",
"name": "other",
"description": "unauthorized",
"permissions": [
]
}
]
}
}
}
test_fd_control_plane_allow_view_developer if {
fd_control_plane_allow_view with input as {
"user": {
"roles": [
{
"roleId": "developer",
"name": "Developer",
"description": "can edit projects and view runtimes",
"permissions": [
"console.data-fabric.control-plane.view",
]
}
]
}
}
}
test_fd_control_plane_allow_view_maintainer if {
fd_control_plane_allow_view with input as {
"user": {
"roles": [
{
"roleId": "project-admin",
"name": "Project Administrator",
"description": "can edit projects and runtimes",
"permissions": [
"console.data-fabric.control-plane.edit",
]
}
]
}
}
}
test_fd_control_plane_allow_view_admin if {
fd_control_plane_allow_view with input as {
"user": {
"roles": [
{
"roleId": "project-admin",
"name": "Project Administrator",
"description": "can edit projects and runtimes",
"permissions": [
"console.data-fabric.control-plane.view",
"console.data-fabric.control-plane.edit",
]
}
]
}
}
}
test_fd_control_plane_allow_view_owner if {
not fd_control_plane_allow_view with input as {
"user": {
"roles": [
{
"roleId": "company-owner",
"name": "Company Owner",
"description": "can edit projects and runtimes",
"permissions": [
"console.fast-data.control-plane.manager"
]
}
]
}
}
}
# ======================================= #
test_fd_control_plane_allow_edit_default if {
not fd_control_plane_allow_edit
}
test_fd_control_plane_allow_edit_no_permissions if {
not fd_control_plane_allow_edit with input as {
"user": {
"roles": [
{
"roleId": "other",
"name": "other",
"description": "unauthorized",
"permissions": [
]
}
]
}
}
}
test_fd_control_plane_allow_edit_developer if {
not fd_control_plane_allow_edit with input as {
"user": {
"roles": [
{
"roleId": "developer",
"name": "Developer",
"description": "can edit projects and view runtimes",
"permissions": [
"console.data-fabric.control-plane.view",
]
}
]
}
}
}
test_fd_control_plane_allow_edit_maintainer if {
fd_control_plane_allow_edit with input as {
"user": {
"roles": [
{
"roleId": "maintainer",
"name": "Maintainer",
"description": "can edit projects and runtimes",
"permissions": [
"console.data-fabric.control-plane.view",
"console.data-fabric.control-plane.edit",
]
}
]
}
}
}
test_fd_control_plane_allow_edit_owner if {
not fd_control_plane_allow_edit with input as {
"user": {
"roles": [
{
"roleId": "company-owner",
"name": "Company Owner",
"description": "can edit projects and runtimes",
"permissions": [
"console.data-fabric.control-plane.manage",
]
}
]
}
}
}
