package policies
allow_all if {
true
}
default allow_manage_cp_users = false
allow_manage_cp_users if {
# extract the roles associated to the user who performed the request
userRoles := input.user.roles[_]
# for each role, verify whether it has the permission to manage users
userRoles.permissions[_] == "console.data-fabric.control-plane.manage"
}
default fd_control_plane_allow_view = false
fd_control_plane_allow_view if {
userRoles := input.user.roles[_]
userRoles.permissions[_] == "console.data-fabric.control-plane.view"
}
# defining multiple times the same policy is equivalent to setting their rules in an "or" statement
fd_control_plane_allow_view if {
userRoles := input.user.roles[_]
userRoles.permissions[_] == "console.data-fabric.control-plane.edit"
}
default fd_control_plane_allow_edit = false
fd_control_plane_allow_edit if {
userRoles := input.user.roles[_]
userRoles.permissions[_] == "console.data-fabric.control-plane.edit"
}
