"""API pagination: page numbers, page size chosen by the client within bounds."""

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination


class ConsolePagination(PageNumberPagination):
    """Page numbers from 1 and sizes from 1 to 500; anything else is a 400.

    DRF would answer a malformed page with a 404 and silently replace a bad size by
    the default: a client bug should be told, not guessed around. A page past the
    last one is still a 404 (there is no such page).
    """

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500

    def paginate_queryset(self, queryset, request, view=None):
        for name, maximum in (
            (self.page_query_param, None),
            (self.page_size_query_param, self.max_page_size),
        ):
            values = request.query_params.getlist(name)
            if not values:
                continue
            bound = f" and at most {maximum}" if maximum else ""
            message = f"A whole number, 1 or more{bound}."
            if len(values) > 1:
                raise ValidationError({name: ["Give it once."]})
            value = values[0]
            digits = value.lstrip("0")
            if not (value.isascii() and value.isdigit()) or not digits:
                raise ValidationError({name: [message]})
            # Compared by length first: int() refuses over 4,300 digits.
            if maximum and (len(digits) > len(str(maximum)) or int(digits) > maximum):
                raise ValidationError({name: [message]})
        return super().paginate_queryset(queryset, request, view)

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"]["minimum"] = 1
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"]["maximum"] = self.max_page_size
                parameter["description"] = (
                    f"Results per page, 1 to {self.max_page_size} (default "
                    f"{self.page_size})."
                )
        return parameters
