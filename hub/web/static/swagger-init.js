/* Starts Swagger UI on /docs. An external file, because the Content-Security-Policy
   allows no inline script; every asset comes from the hub itself (hub.web.apidocs). */
window.addEventListener("load", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.getAttribute("data-openapi"),
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,  /* the default asks validator.swagger.io, a third party */
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    tryItOutEnabled: true
  });
});
