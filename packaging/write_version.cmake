# cmake -DOUT=<file> -DVERSION=<x.y.z> -DCMAKE_SIZEOF_VOID_P=<n> -P write_version.cmake
# Writes vtowerConfigVersion.cmake with CMake's own helper. SameMinorVersion: while the
# major version is 0, a new minor version may break the API (find_package(vtower 0.1)
# accepts 0.1.x, not 0.2).
include(CMakePackageConfigHelpers)
write_basic_package_version_file("${OUT}" VERSION "${VERSION}" COMPATIBILITY SameMinorVersion)
