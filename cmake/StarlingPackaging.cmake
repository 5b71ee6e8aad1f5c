# Installation layout and the Debian packages (CPack), issue 15. From a build folder:
#   cmake --build build/release --target starlingd starlingctl starling-agent && (cd build/release && cpack -G DEB)
# makes starlingd_<version>_<arch>.deb and starling-agent_<version>_<arch>.deb (each only when its
# targets are in the build: a cross-build with STARLING_BUILD_BROKER=OFF makes the agent's alone).
# deploy/README.md describes what they install and do.
include(GNUInstallDirs)
set(_starling_components)

if(TARGET starlingd)
list(APPEND _starling_components starlingd)

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
endif()

# starling-agent: deploy/starling-agent.toml is written for an installed system already (queue in
# /var/lib/starling-agent, status socket in /run/starling-agent, the unit's folders); checked here
# so that an edit of the example cannot silently ship a configuration the unit cannot run.
if(TARGET starling-agent)
list(APPEND _starling_components agent)
set(_agent_conf ${PROJECT_SOURCE_DIR}/deploy/starling-agent.toml)
file(READ ${_agent_conf} _agent_conf_text)
foreach(_line "dir = \"/var/lib/starling-agent/queue\"" "status_socket = \"/run/starling-agent/status.sock\"")
  string(FIND "${_agent_conf_text}" "${_line}" _agent_at)
  if(_agent_at EQUAL -1)
    message(FATAL_ERROR "deploy/starling-agent.toml: no '${_line}' line (the unit's folders)")
  endif()
endforeach()
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${_agent_conf})
install(TARGETS starling-agent RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT agent)
install(FILES ${_agent_conf} DESTINATION /etc/starling
        PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ COMPONENT agent)
install(FILES ${PROJECT_SOURCE_DIR}/deploy/systemd/starling-agent.service DESTINATION /lib/systemd/system
        COMPONENT agent)
install(FILES ${PROJECT_SOURCE_DIR}/edge-agent/README.md ${_agent_conf}
        DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/starling-agent COMPONENT agent)
endif()

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME starling)
set(CPACK_PACKAGE_VENDOR "Starling")
set(CPACK_PACKAGE_CONTACT "Starling maintainers <starling@localhost>")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL ${_starling_components})
# The target's Debian architecture (dpkg's own guess is the build machine's, wrong when cross-building).
if(CMAKE_CROSSCOMPILING)
  if(CMAKE_SYSTEM_PROCESSOR STREQUAL "aarch64")
    set(CPACK_DEBIAN_PACKAGE_ARCHITECTURE arm64)
  elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "^arm")
    set(CPACK_DEBIAN_PACKAGE_ARCHITECTURE armhf)
  endif()
endif()
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_STARLINGD_PACKAGE_NAME starlingd)
set(CPACK_DEBIAN_STARLINGD_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://localhost/starling")
# Each package's summary is the first line of its description (CPack 3.25 would otherwise put
# the project's one-line description, the broker's, on both packages).
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "")
set(CPACK_COMPONENT_STARLINGD_DESCRIPTION
    "${PROJECT_DESCRIPTION}\nStarling serves XMPP clients (RFC 6120/6121) with PubSub, MAM, stream management and client state indication, sized for a million device connections per machine. This package installs the broker (starlingd), its admin tool (starlingctl), a hardened systemd unit (not enabled) and a configuration in /etc/starling.")
# Library dependencies from the binaries (dpkg-shlibdeps), and what the maintainer scripts use.
set(CPACK_DEBIAN_STARLINGD_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_STARLINGD_PACKAGE_DEPENDS "adduser, openssl")
set(CPACK_DEBIAN_STARLINGD_PACKAGE_CONTROL_EXTRA
    ${PROJECT_SOURCE_DIR}/deploy/debian/conffiles
    ${PROJECT_SOURCE_DIR}/deploy/debian/postinst
    ${PROJECT_SOURCE_DIR}/deploy/debian/prerm
    ${PROJECT_SOURCE_DIR}/deploy/debian/postrm)
set(CPACK_DEBIAN_STARLINGD_PACKAGE_CONTROL_STRICT_PERMISSION ON)

set(CPACK_DEBIAN_AGENT_PACKAGE_NAME starling-agent)
set(CPACK_DEBIAN_AGENT_PACKAGE_SECTION net)
set(CPACK_COMPONENT_AGENT_DESCRIPTION
    "Starling edge agent: sensor readings to XMPP PubSub, ad-hoc commands\nstarling-agent runs on embedded Linux boards: it reads sensors (sysfs files, programs, a firmware shim), publishes the readings to an XMPP broker over PubSub with a store-and-forward queue on disk, and runs XEP-0050 ad-hoc commands for the operators it is told to trust. This package installs the agent, a hardened systemd unit (not enabled) and an example configuration in /etc/starling.")
set(CPACK_DEBIAN_AGENT_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_AGENT_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_AGENT_PACKAGE_CONTROL_EXTRA
    ${PROJECT_SOURCE_DIR}/deploy/debian/agent/conffiles
    ${PROJECT_SOURCE_DIR}/deploy/debian/agent/postinst
    ${PROJECT_SOURCE_DIR}/deploy/debian/agent/prerm
    ${PROJECT_SOURCE_DIR}/deploy/debian/agent/postrm)
set(CPACK_DEBIAN_AGENT_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
