// outergate developer portal: renders the gateway's OpenAPI document with
// Swagger UI. Kept out of the page so that the page's Content-Security-Policy
// can forbid inline scripts. The page is public: nothing here is a secret,
// and no client id is filled in.
"use strict";
(function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.getAttribute("data-spec"),
    domNode: root,
    deepLinking: true,
    tryItOutEnabled: true,
    displayRequestDuration: true,
    persistAuthorization: false,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout"
  });
})();
