# Installation layout and the Debian package (CPack), issue 15. From a build folder:
#   cmake --build build/release --target starlingd starlingctl && (cd build/release && cpack -G DEB)
# makes starlingd_<version>_<arch>.deb. deploy/README.md describes what it installs and does.
# The agent's package (starling-agent) joins here once edge-agent/ installs itself.
include(GNUInstallDirs)

# The packaged configuration: deploy/starlingd.toml (every option at its default, kept true by
# a unit test) with the data folder the package owns.
set(_starling_conf_in ${PROJECT_SOURCE_DIR}/deploy/starlingd.toml)
set(_starling_conf_out ${PROJECT_BINARY_DIR}/deploy/starlingd.toml)
file(READ ${_starling_conf_in} _starling_conf)
string(FIND "${_starling_conf}" "data_dir = \"./data\"" _starling_at)
if(_starling_at EQUAL -1)
  message(FATAL_ERROR "deploy/starlingd.toml: no 'data_dir = \"./data\"' line to set for the package")
endif()
string(REPLACE "data_dir = \"./data\"" "data_dir = \"/var/lib/starling\"" _starling_conf "${_starling_conf}")
file(WRITE ${_starling_conf_out}.tmp "${_starling_conf}")
configure_file(${_starling_conf_out}.tmp ${_starling_conf_out} COPYONLY)
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${_starling_conf_in})

install(TARGETS starlingd starlingctl RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT starlingd)
install(FILES ${_starling_conf_out} DESTINATION /etc/starling
        PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ COMPONENT starlingd)
install(FILES ${PROJECT_SOURCE_DIR}/deploy/systemd/starlingd.service DESTINATION /lib/systemd/system
        COMPONENT starlingd)
install(FILES ${PROJECT_SOURCE_DIR}/deploy/README.md ${_starling_conf_in}
        DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/starlingd COMPONENT starlingd)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME starling)
set(CPACK_PACKAGE_VENDOR "Starling")
set(CPACK_PACKAGE_CONTACT "Starling maintainers <starling@localhost>")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL starlingd)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_STARLINGD_PACKAGE_NAME starlingd)
set(CPACK_DEBIAN_STARLINGD_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://localhost/starling")
set(CPACK_COMPONENT_STARLINGD_DESCRIPTION
    "Starling serves XMPP clients (RFC 6120/6121) with PubSub, MAM, stream management and client state indication, sized for a million device connections per machine. This package installs the broker (starlingd), its admin tool (starlingctl), a hardened systemd unit (not enabled) and a configuration in /etc/starling.")
# Library dependencies from the binaries (dpkg-shlibdeps), and what the maintainer scripts use.
set(CPACK_DEBIAN_STARLINGD_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_STARLINGD_PACKAGE_DEPENDS "adduser, openssl")
set(CPACK_DEBIAN_STARLINGD_PACKAGE_CONTROL_EXTRA
    ${PROJECT_SOURCE_DIR}/deploy/debian/conffiles
    ${PROJECT_SOURCE_DIR}/deploy/debian/postinst
    ${PROJECT_SOURCE_DIR}/deploy/debian/prerm
    ${PROJECT_SOURCE_DIR}/deploy/debian/postrm)
set(CPACK_DEBIAN_STARLINGD_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
