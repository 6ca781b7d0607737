package org.chartlight.sandbox;

import ca.uhn.fhir.rest.api.EncodingEnum;
import ca.uhn.fhir.rest.api.RestOperationTypeEnum;
import ca.uhn.fhir.rest.api.server.RequestDetails;
import ca.uhn.fhir.validation.IValidationContext;
import ca.uhn.fhir.validation.IValidatorModule;
import ca.uhn.fhir.validation.SingleValidationMessage;
import ca.uhn.fhir.validation.ValidationContext;
import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.StreamReadConstraints;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.json.JsonMapper;
import org.hl7.fhir.instance.model.api.IBaseResource;

/**
 * Validates a transaction or batch request entry by entry, the way the server will store the
 * entries, instead of as one Bundle resource.
 *
 * <p>The Bundle-level rules (every entry needs a fullUrl, relative references need one to
 * resolve against) are for Bundles stored or exchanged as documents; HAPI processes transactions
 * without them, so holding them against a transaction would refuse valid writes. Each entry's
 * resource is validated from its own JSON text, so unknown properties are still caught. XML
 * transactions are validated as a whole.
 */
final class TransactionEntryValidator implements IValidatorModule {

	// Entries may carry inline attachments far above Jackson's default 20M-character limit.
	private static final ObjectMapper JSON = JsonMapper.builder(JsonFactory.builder()
					.streamReadConstraints(StreamReadConstraints.builder()
							.maxStringLength(Integer.MAX_VALUE)
							.build())
					.build())
			.build();

	private final IValidatorModule delegate;

	TransactionEntryValidator(IValidatorModule delegate) {
		this.delegate = delegate;
	}

	@Override
	public void validateResource(IValidationContext<IBaseResource> context) {
		if (!isJsonTransaction(context)) {
			delegate.validateResource(context);
			return;
		}
		JsonNode entries;
		try {
			entries = JSON.readTree(context.getResourceAsString()).path("entry");
		} catch (JsonProcessingException e) {
			delegate.validateResource(context); // reports the syntax error itself
			return;
		}
		for (int i = 0; i < entries.size(); i++) {
			JsonNode resource = entries.get(i).path("resource");
			if (resource.isObject()) {
				validateEntry(context, i, resource);
			}
		}
	}

	private void validateEntry(IValidationContext<IBaseResource> context, int index, JsonNode resource) {
		IValidationContext<IBaseResource> entryContext;
		try {
			entryContext = ValidationContext.forText(
					context.getFhirContext(), JSON.writeValueAsString(resource), context.getOptions());
		} catch (JsonProcessingException e) {
			throw new IllegalStateException("re-encoding a parsed JSON node failed", e);
		}
		delegate.validateResource(entryContext);

		String type = resource.path("resourceType").asText();
		String entryPath = "Bundle.entry[" + index + "].resource";
		for (SingleValidationMessage message : entryContext.getMessages()) {
			String location = message.getLocationString();
			// Line and column point into the entry's own text, not the request body.
			message.setLocationLine(null);
			message.setLocationCol(null);
			if (location == null || !location.startsWith(type)) {
				message.setLocationString(location == null ? entryPath : entryPath + ": " + location);
			} else {
				message.setLocationString(entryPath + location.substring(type.length()));
			}
			context.addValidationMessage(message);
		}
	}

	private static boolean isJsonTransaction(IValidationContext<IBaseResource> context) {
		// RequestValidatingInterceptor hands the request over as the options' app context.
		return context.getOptions().getAppContext() instanceof RequestDetails request
				&& request.getRestOperationType() == RestOperationTypeEnum.TRANSACTION
				&& context.getResourceAsStringEncoding() == EncodingEnum.JSON;
	}
}
